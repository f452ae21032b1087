import { Wallet, hexlify, randomBytes } from "ethers";
import { pino } from "pino";
import { WebSocketServer } from "ws";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_FORWARDING, Forwarder, hopWaitMs, validateForwarding, type ForwardingOptions } from "../../../node/server/forwarder.js";
import { encodeActivations } from "../../../protocol/activations.js";
import { ErrorCode, type Step } from "../../../protocol/wire.js";
import { fakeServer, silentPeer, type FakeServer } from "../../support/fakeShardServer.js";

const VARIANT = "0x" + "cd".repeat(32);
const open: { close(): Promise<void> }[] = [];
const forwarders: Forwarder[] = [];

afterEach(async () => {
  for (const f of forwarders.splice(0)) f.close();
  for (const s of open.splice(0)) await s.close();
});

async function peer(o: Parameters<typeof silentPeer>[0] = {}): Promise<FakeServer & { steps: () => number }> {
  const p = await silentPeer(o);
  open.push(p);
  return p;
}

const step = (rows = 1): Omit<Step, "type" | "requestId"> => ({
  sessionId: hexlify(randomBytes(32)),
  tag: hexlify(randomBytes(32)),
  step: 0n,
  position: 0,
  outputEncoding: "fp32",
  input: encodeActivations(new Float32Array(rows * 8), rows, 8, "fp32"),
  route: [],
});

/** A forwarder for a server whose output goes to layer 4; loopback peers allowed unless a test says otherwise. */
function forwarder(o: Partial<ForwardingOptions> = {}): Forwarder {
  const me = Wallet.createRandom();
  const f = new Forwarder(
    { ...DEFAULT_FORWARDING, allowPrivateAddresses: true, ...o },
    { variantId: VARIANT, firstLayer: 4 },
    { signingKey: me.signingKey, address: me.address },
    pino({ level: "silent" }),
  );
  forwarders.push(f);
  return f;
}

const settled = <T>(p: Promise<T>): Promise<T | unknown> => p.then((v) => v, (err: unknown) => err);
const uniform = (url: string): string => `next hop ${url} is unreachable, is not an eFed server, or is not one this server forwards to`;

describe("Forwarder (the pool of next-hop connections)", () => {
  it("keeps one authenticated connection per peer, closes an idle one to make room, and refuses when all are busy", async () => {
    const [a, b, c] = [await peer(), await peer(), await peer()];
    const f = forwarder({ maxPeers: 2, hopTimeoutMs: 60_000 });
    const la = await f.link(f.check(a.url));
    expect(await f.link(f.check(a.url))).toBe(la);
    const lb = await f.link(f.check(b.url));
    expect(f.size).toBe(2);
    // a and b idle: the least recently used (a) goes
    const lc = await f.link(f.check(c.url));
    expect(f.size).toBe(2);
    // b and c busy with a step that never finishes: no room for a
    const pending = [f.forward(f.check(b.url), step()), f.forward(f.check(c.url), step())];
    for (const p of pending) p.catch(() => undefined);
    while (lb.busy + lc.busy < 2) await new Promise((resolve) => setImmediate(resolve)); // the sends are under way
    await expect(f.link(f.check(a.url))).rejects.toMatchObject({
      wireCode: ErrorCode.Overloaded,
      message: "server holds its maximum of 2 next-hop connections, all busy",
    });
    // the peers received the steps through the authenticated (sealed) link
    while (b.steps() + c.steps() < 2) await new Promise((resolve) => setTimeout(resolve, 5));
    f.close();
    // closing fails the steps in flight with an error naming the peer
    const err = await settled(pending[0]!);
    expect(err).toMatchObject({ wireCode: ErrorCode.Upstream, hop: 1 });
    expect((err as Error).message).toMatch(/^next hop: connection to ws:\/\/127\.0\.0\.1:\d+ closed by this side \(server shutting down\); step 0 of session 0x[0-9a-f]{64} was in flight$/);
  });

  it("sends a step on an open link before forward() returns, so the caller's receipt work does not delay the next hop", async () => {
    const p = await peer();
    const f = forwarder({ hopTimeoutMs: 60_000 });
    const link = await f.link(f.check(p.url));
    const pending = f.forward(f.check(p.url), step());
    pending.catch(() => undefined);
    // synchronously after the call: the request is on the link (not queued behind a microtask)
    expect(link.busy).toBe(1);
    while (p.steps() < 1) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(p.steps()).toBe(1);
  });

  it("does not send a frame over the peer's announced limit (it would drop the shared link), and the link goes on", async () => {
    const p = await peer();
    const f = forwarder();
    const err = await settled(f.forward(f.check(p.url), step(200))); // 6497 bytes and the 32-byte link MAC
    expect(err).toMatchObject({ wireCode: ErrorCode.TooLarge, hop: 1 });
    expect((err as Error).message).toMatch(/^forwarded step 0 of session 0x[0-9a-f]{64}: a 6529-byte frame is over ws:\/\/127\.0\.0\.1:\d+'s limit of 4096$/);
    // the link goes on: the refused frame used up no frame number of its MAC sequence
    const small = f.forward(f.check(p.url), step(1));
    small.catch(() => undefined);
    while (p.steps() === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(p.steps()).toBe(1);
  });

  it("waits hopTimeoutMs plus a little per hop left, with a cap that no route length passes", async () => {
    expect([0, 1, 16, 17, 255].map((n) => hopWaitMs(10_000, n))).toEqual([10_000, 10_250, 14_000, 14_000, 14_000]);
    const p = await peer();
    const f = forwarder({ hopTimeoutMs: 50 });
    const s = { ...step(), route: [{ url: "ws://127.0.0.1:9", sessionId: hexlify(randomBytes(32)), tag: hexlify(randomBytes(32)) }] };
    const err = await settled(f.forward(f.check(p.url), s));
    expect(err).toMatchObject({ wireCode: ErrorCode.Upstream, hop: 1 });
    expect((err as Error).message).toBe(`next hop ${p.url} did not finish step 0 of session ${s.sessionId} within 300 ms`);
  });

  it("gives every failed connect one message, after the same delay: closed port, no eFed server, silent, impostor, private address, endpoint refused", async () => {
    const connectTimeoutMs = 300;
    const closed = await fakeServer();
    const closedUrl = closed.url;
    await closed.close();
    const notEfed = new WebSocketServer({ host: "127.0.0.1", port: 0, verifyClient: () => false });
    await new Promise<void>((resolve) => notEfed.once("listening", resolve));
    open.push({ close: () => new Promise<void>((resolve) => notEfed.close(() => resolve())) });
    const mute = new WebSocketServer({ host: "127.0.0.1", port: 0 }); // accepts, never says hello
    await new Promise<void>((resolve) => mute.once("listening", resolve));
    open.push({
      close: () => {
        for (const c of mute.clients) c.terminate();
        return new Promise<void>((resolve) => mute.close(() => resolve()));
      },
    });
    const impostor = await peer({ welcomeBy: Wallet.createRandom() }); // its welcome is not signed by the address it announces
    const good = await peer();
    const urlOf = (w: WebSocketServer): string => `ws://127.0.0.1:${(w.address() as { port: number }).port}`;
    const asked: [string, number][] = [];
    const cases: [Forwarder, string][] = [
      [forwarder({ connectTimeoutMs }), closedUrl],
      [forwarder({ connectTimeoutMs }), urlOf(notEfed)],
      [forwarder({ connectTimeoutMs }), urlOf(mute)],
      [forwarder({ connectTimeoutMs }), impostor.url],
      [forwarder({ connectTimeoutMs, allowPrivateAddresses: false }), good.url],
      [forwarder({ connectTimeoutMs, allowPrivateAddresses: false }), good.url.replace("127.0.0.1", "localhost")],
      [forwarder({ connectTimeoutMs, allowPrivateAddresses: false }), "ws://[::ffff:127.0.0.1]:" + good.url.split(":")[2]],
      [forwarder({ connectTimeoutMs, endpointAllowed: (url, first) => (asked.push([url, first]), Promise.resolve(false)) }), good.url],
    ];
    const results = await Promise.all(
      cases.map(async ([f, url]) => {
        const key = f.check(url);
        const started = Date.now();
        const err = await settled(f.link(key));
        return { key, err, tookMs: Date.now() - started };
      }),
    );
    for (const { key, err, tookMs } of results) {
      expect(err).toMatchObject({ wireCode: ErrorCode.Upstream, hop: 1, message: uniform(key) });
      expect(tookMs).toBeGreaterThanOrEqual(connectTimeoutMs - 5); // padded: a refusal answers no sooner than a timeout
    }
    expect(asked).toEqual([[good.url, 4]]);
    expect(good.steps()).toBe(0);
    // the same peer, allowed, connects
    const allowed = forwarder({ endpointAllowed: () => Promise.resolve(true) });
    expect((await allowed.link(allowed.check(good.url))).info.firstLayer).toBe(4);
  });

  it("refuses, at once and by name, a peer that serves other layers (an eFed server: nothing to hide)", async () => {
    const p = await peer({ info: { firstLayer: 2, lastLayer: 6 } });
    const f = forwarder();
    await expect(f.link(f.check(p.url))).rejects.toMatchObject({
      wireCode: ErrorCode.BadRoute,
      message: `next hop ${p.url} serves layers 2:6 of variant ${VARIANT}; this server's output goes to layer 4 of variant ${VARIANT}`,
    });
  });

  it("validates its options, naming the bad one", () => {
    expect(() => validateForwarding({ ...DEFAULT_FORWARDING, hopTimeoutMs: 0 })).toThrow("forwarding option hopTimeoutMs must be a positive integer, got 0");
    expect(() => validateForwarding({ ...DEFAULT_FORWARDING, heartbeatTimeoutMs: 2_000 })).toThrow(
      "forwarding option heartbeatTimeoutMs (2000) must exceed heartbeatIntervalMs (2000)",
    );
    expect(() => validateForwarding({ ...DEFAULT_FORWARDING, allowedHosts: ["h/x"] })).toThrow(
      'forwarding option allowedHosts: "h/x" is not a host name or address (IPv6 in brackets, e.g. [::1])',
    );
    expect(() => validateForwarding({ ...DEFAULT_FORWARDING, allowedHosts: ["::1"] })).toThrow('"::1" is not a host name');
    expect(forwarder({ allowedHosts: ["LOCALHOST", "[::1]"] }).check("ws://localhost:5")).toBe("ws://localhost:5");
    expect(forwarder().check("WSS://Shard.Example/")).toBe("wss://shard.example:443");
    expect(() => forwarder({ allowedHosts: [] }).check("ws://localhost:5")).toThrow("next hop host localhost is not one this server forwards to");
  });
});
