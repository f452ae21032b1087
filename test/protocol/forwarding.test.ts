import { hexlify, randomBytes } from "ethers";
import { describe, expect, it } from "vitest";
import { buildRoute, forwardTag, parseHopUrl, tagMatches, type TaggedStep } from "../../protocol/forwarding.js";
import { ErrorCode, WireError } from "../../protocol/wire.js";

const key = "0x" + "11".repeat(32);
const base: TaggedStep = {
  sessionId: "0x" + "22".repeat(32),
  step: 5n,
  position: 17,
  rows: 1,
  outputEncoding: "fp32",
  route: [{ url: "ws://127.0.0.1:9003", sessionId: "0x" + "33".repeat(32), tag: "0x" + "44".repeat(32) }],
};

describe("forwarding tags", () => {
  it("are HMAC-SHA256 over the step and the route after the hop (value checked with Python's hmac)", () => {
    const tag = forwardTag(key, base);
    // hmac.new(b"\x11"*32, b"efed.forward.v1" + session + pack("<QIIB", 5, 17, 1, 0) + route bytes, sha256)
    expect(tag).toBe("0x95af4307ce1eb4bd43171ea757515103be9b8fbce9de64b39507bc37fc5aff1f");
    expect(tagMatches(key, base, tag)).toBe(true);
  });

  it("do not match another key, step, position, size, encoding, session or route", () => {
    const tag = forwardTag(key, base);
    const variants: TaggedStep[] = [
      { ...base, step: 6n },
      { ...base, position: 18 },
      { ...base, rows: 2 },
      { ...base, outputEncoding: "fp16" },
      { ...base, sessionId: "0x" + "23".repeat(32) },
      { ...base, route: [] },
      { ...base, route: [{ ...base.route[0]!, url: "ws://127.0.0.1:9004" }] },
    ];
    for (const v of variants) expect(tagMatches(key, v, tag)).toBe(false);
    expect(tagMatches("0x" + "12".repeat(32), base, tag)).toBe(false);
    expect(tagMatches(key, base, "0x" + "00".repeat(32))).toBe(false);
  });

  it("chain from the last hop back: each hop's tag binds the hops after it", () => {
    const hops = [0, 1, 2].map((i) => ({ url: `ws://127.0.0.1:900${i}`, sessionId: hexlify(randomBytes(32)), forwardKey: hexlify(randomBytes(32)) }));
    const step = { step: 3n, position: 40, rows: 1, outputEncoding: "int8" as const };
    const route = buildRoute(hops, step);
    expect(route.map((h) => h.url)).toEqual(hops.map((h) => h.url));
    route.forEach((h, i) => {
      expect(tagMatches(hops[i]!.forwardKey, { ...step, sessionId: h.sessionId, route: route.slice(i + 1) }, h.tag)).toBe(true);
    });
    // a server that drops or reorders the hops after it invalidates the next tag
    expect(tagMatches(hops[0]!.forwardKey, { ...step, sessionId: route[0]!.sessionId, route: route.slice(2) }, route[0]!.tag)).toBe(false);
  });
});

describe("hop URLs", () => {
  it("accept ws://HOST:PORT only", () => {
    expect(parseHopUrl("ws://127.0.0.1:9001")).toEqual({ host: "127.0.0.1", port: 9001 });
    expect(parseHopUrl("ws://Shard.Example:80/")).toEqual({ host: "shard.example", port: 80 });
    expect(parseHopUrl("ws://[::1]:7")).toEqual({ host: "[::1]", port: 7 });
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
    expect(refusal("wss://h:1").message).toBe('hop URL "wss://h:1" has scheme wss:, expected ws:');
    expect(refusal("http://h:1").message).toBe('hop URL "http://h:1" has scheme http:, expected ws:');
    expect(refusal("ws://u:p@h:1").message).toBe('hop URL "ws://u:p@h:1" carries credentials');
    expect(refusal("ws://h:1/admin").message).toBe('hop URL "ws://h:1/admin" has a path, query or fragment; expected ws://HOST:PORT');
    expect(refusal("ws://h:1?x=1").message).toBe('hop URL "ws://h:1?x=1" has a path, query or fragment; expected ws://HOST:PORT');
    expect(refusal("ws://h:0").message).toBe('hop URL "ws://h:0" has port 0');
    expect(refusal("not a url").message).toBe('hop URL "not a url" is not a URL');
    expect(refusal(`ws://${"a".repeat(300)}:1`).message).toBe(`hop URL "ws://${"a".repeat(75)}" is 307 characters, over 256`);
    expect(refusal("ws://h:1/x").wireCode).toBe(ErrorCode.BadRoute);
  });
});
