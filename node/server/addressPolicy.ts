import { lookup } from "node:dns/promises";
import { BlockList, isIP } from "node:net";

/**
 * Which IP addresses a server may open a next-hop connection to on a client's word. By default
 * only public unicast addresses: never loopback, private (RFC 1918, IPv6 ULA), link-local, CGNAT,
 * multicast, unspecified, documentation, benchmarking or reserved ranges, nor IPv6 forms that
 * carry such an IPv4 address (mapped, NAT64, 6to4) or tunnel to anywhere (Teredo).
 */
const NON_PUBLIC_V4 = new BlockList();
for (const [net, bits] of [
  ["0.0.0.0", 8], // "this network", unspecified
  ["10.0.0.0", 8], // private
  ["100.64.0.0", 10], // CGNAT
  ["127.0.0.0", 8], // loopback
  ["169.254.0.0", 16], // link-local (cloud metadata endpoints live here)
  ["172.16.0.0", 12], // private
  ["192.0.0.0", 24], // IETF protocol assignments
  ["192.0.2.0", 24], // documentation
  ["192.88.99.0", 24], // 6to4 relay anycast
  ["192.168.0.0", 16], // private
  ["198.18.0.0", 15], // benchmarking
  ["198.51.100.0", 24], // documentation
  ["203.0.113.0", 24], // documentation
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved, broadcast
] as const) {
  NON_PUBLIC_V4.addSubnet(net, bits, "ipv4");
}

const NON_PUBLIC_V6 = new BlockList();
for (const [net, bits] of [
  ["::", 96], // unspecified, loopback, IPv4-compatible
  ["64:ff9b:1::", 48], // local-use NAT64
  ["100::", 64], // discard
  ["2001::", 32], // Teredo
  ["2001:db8::", 32], // documentation
  ["fc00::", 7], // unique local (private)
  ["fe80::", 10], // link-local
  ["fec0::", 10], // site-local (deprecated)
  ["ff00::", 8], // multicast
] as const) {
  NON_PUBLIC_V6.addSubnet(net, bits, "ipv6");
}

/** Whether `ip` (an IPv4 or IPv6 literal, IPv6 without brackets) is a public unicast address. */
export function isPublicAddress(ip: string): boolean {
  const family = isIP(ip);
  if (family === 4) return !NON_PUBLIC_V4.check(ip, "ipv4");
  if (family !== 6) return false;
  const b = ipv6Bytes(ip);
  const embedded = (at: number): string => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
  const prefixIs = (words: number[]): boolean => words.every((w, i) => b[2 * i]! * 256 + b[2 * i + 1]! === w);
  if (prefixIs([0, 0, 0, 0, 0, 0xffff])) return isPublicAddress(embedded(12)); // IPv4-mapped
  if (prefixIs([0x64, 0xff9b, 0, 0, 0, 0])) return isPublicAddress(embedded(12)); // NAT64
  if (prefixIs([0x2002])) return isPublicAddress(embedded(2)); // 6to4
  return !NON_PUBLIC_V6.check(ip, "ipv6");
}

/** The 16 bytes of an IPv6 literal (with "::" and an optional dotted IPv4 tail). */
function ipv6Bytes(ip: string): number[] {
  let text = ip;
  const tail: number[] = [];
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted !== null) {
    const v4 = dotted[1]!.split(".").map(Number);
    tail.push(v4[0]! * 256 + v4[1]!, v4[2]! * 256 + v4[3]!);
    text = text.slice(0, -dotted[1]!.length) + "0";
    text = text.endsWith("::0") ? text.slice(0, -1) : text.slice(0, -2);
  }
  const [head, rest] = text.includes("::") ? text.split("::") : [text, undefined];
  const words = (s: string | undefined): number[] => (s === undefined || s === "" ? [] : s.split(":").map((w) => parseInt(w, 16)));
  const front = words(head);
  const back = [...words(rest), ...tail];
  const fill = rest === undefined && tail.length === 0 ? [] : Array<number>(8 - front.length - back.length).fill(0);
  const all = [...front, ...fill, ...back];
  return all.flatMap((w) => [w >> 8, w & 0xff]);
}

/**
 * Resolves `host` (a name, an IPv4 literal, or an IPv6 literal in brackets as URLs write it) and
 * returns the address to connect to. Unless `allowPrivate`, refuses when any address it resolves
 * to is not public: the caller connects to exactly the address checked, so a name that resolves
 * differently a moment later (DNS rebinding) changes nothing.
 */
export async function resolvePublicAddress(host: string, allowPrivate: boolean): Promise<string> {
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  const addresses = isIP(bare) !== 0 ? [bare] : (await lookup(bare, { all: true, verbatim: true })).map((a) => a.address);
  const first = addresses[0];
  if (first === undefined) throw new Error(`${host} resolves to no address`);
  if (!allowPrivate) {
    const refused = addresses.find((a) => !isPublicAddress(a));
    if (refused !== undefined) throw new Error(`${host} resolves to ${refused}, not a public address`);
  }
  return first;
}
