import { Wallet, hexlify, randomBytes } from "ethers";
import { describe, expect, it } from "vitest";
import { buildRoute, canonicalHopUrl, forwardTag, parseHopUrl, tagMatches, type TaggedStep } from "../../protocol/forwarding.js";
import { ErrorCode, WireError } from "../../protocol/wire.js";

const key = "0x" + "11".repeat(32);
const base: TaggedStep = {
  sessionId: "0x" + "22".repeat(32),
  step: 5n,
  position: 17,
  rows: 1,
  outputEncoding: "fp32",
  previous: "0x" + "55".repeat(20),
  route: [{ url: "ws://127.0.0.1:9003", sessionId: "0x" + "33".repeat(32), tag: "0x" + "44".repeat(32) }],
};

describe("forwarding tags", () => {
  it("are HMAC-SHA256 over the step, the previous hop's address and the route after the hop (value checked with Python's hmac)", () => {
    const tag = forwardTag(key, base);
    // hmac.new(b"\x11"*32, b"efed.forward.v2" + session + pack("<QIIB", 5, 17, 1, 0) + b"\x55"*20 + route bytes, sha256)
    expect(tag).toBe("0x903fcf460daad10879555981230fe0f281129e5bbaacb30d869e70f954988a95");
    expect(tagMatches(key, base, tag)).toBe(true);
  });

  it("do not match another key, step, position, size, encoding, session, previous hop or route", () => {
    const tag = forwardTag(key, base);
    const variants: TaggedStep[] = [
      { ...base, step: 6n },
      { ...base, position: 18 },
      { ...base, rows: 2 },
      { ...base, outputEncoding: "fp16" },
      { ...base, sessionId: "0x" + "23".repeat(32) },
      { ...base, previous: "0x" + "56".repeat(20) },
      { ...base, route: [] },
      { ...base, route: [{ ...base.route[0]!, url: "ws://127.0.0.1:9004" }] },
    ];
    for (const v of variants) expect(tagMatches(key, v, tag)).toBe(false);
    expect(tagMatches("0x" + "12".repeat(32), base, tag)).toBe(false);
    expect(tagMatches(key, base, "0x" + "00".repeat(32))).toBe(false);
  });

  it("chain from the last hop back: each hop's tag binds the hops after it and the server before it", () => {
    const first = Wallet.createRandom().address;
    const hops = [0, 1, 2].map((i) => ({
      url: `ws://127.0.0.1:900${i}`,
      sessionId: hexlify(randomBytes(32)),
      forwardKey: hexlify(randomBytes(32)),
      server: Wallet.createRandom().address,
    }));
    const step = { step: 3n, position: 40, rows: 1, outputEncoding: "int8" as const };
    const route = buildRoute(first, hops, step);
    expect(route.map((h) => h.url)).toEqual(hops.map((h) => h.url));
    const previous = [first, hops[0]!.server, hops[1]!.server];
    route.forEach((h, i) => {
      expect(tagMatches(hops[i]!.forwardKey, { ...step, sessionId: h.sessionId, previous: previous[i]!, route: route.slice(i + 1) }, h.tag)).toBe(true);
      // delivered by any other server (here: the hop itself) it does not match
      expect(tagMatches(hops[i]!.forwardKey, { ...step, sessionId: h.sessionId, previous: hops[i]!.server, route: route.slice(i + 1) }, h.tag)).toBe(false);
    });
    // a server that drops or reorders the hops after it invalidates the next tag
    expect(tagMatches(hops[0]!.forwardKey, { ...step, sessionId: route[0]!.sessionId, previous: first, route: route.slice(2) }, route[0]!.tag)).toBe(false);
  });
});

describe("hop URLs", () => {
  it("accept ws:// and wss://HOST:PORT only, with one canonical spelling", () => {
    expect(parseHopUrl("ws://127.0.0.1:9001")).toEqual({ scheme: "ws:", host: "127.0.0.1", port: 9001 });
    expect(parseHopUrl("ws://Shard.Example:80/")).toEqual({ scheme: "ws:", host: "shard.example", port: 80 });
    expect(parseHopUrl("ws://[::1]:7")).toEqual({ scheme: "ws:", host: "[::1]", port: 7 });
    expect(parseHopUrl("wss://shard.example")).toEqual({ scheme: "wss:", host: "shard.example", port: 443 });
    expect(canonicalHopUrl("WSS://Shard.Example:443/")).toBe("wss://shard.example:443");
    expect(canonicalHopUrl("ws://shard.example")).toBe("ws://shard.example:80");
  });

  it("refuse other schemes, credentials, paths, queries, port 0 and long URLs, naming the problem", () => {
    const refusal = (url: string): WireError => {
      try {
        parseHopUrl(url);
      } catch (err) {
        if (err instanceof WireError) return err;
        throw err;
      }
      throw new Error(`${url} was accepted`);
    };
    expect(refusal("https://h:1").message).toBe('hop URL "https://h:1" has scheme https:, expected ws: or wss:');
    expect(refusal("http://h:1").message).toBe('hop URL "http://h:1" has scheme http:, expected ws: or wss:');
    expect(refusal("ws://u:p@h:1").message).toBe('hop URL "ws://u:p@h:1" carries credentials');
    expect(refusal("ws://h:1/admin").message).toBe('hop URL "ws://h:1/admin" has a path, query or fragment; expected ws://HOST:PORT');
    expect(refusal("ws://h:1?x=1").message).toBe('hop URL "ws://h:1?x=1" has a path, query or fragment; expected ws://HOST:PORT');
    expect(refusal("ws://h:0").message).toBe('hop URL "ws://h:0" has port 0');
    expect(refusal("not a url").message).toBe('hop URL "not a url" is not a URL');
    expect(refusal(`ws://${"a".repeat(300)}:1`).message).toBe(`hop URL "ws://${"a".repeat(75)}" is 307 characters, over 256`);
    expect(refusal("ws://h:1/x").wireCode).toBe(ErrorCode.BadRoute);
  });
});
