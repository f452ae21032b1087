import { Wallet, ZeroAddress, hexlify, randomBytes } from "ethers";
import { pino } from "pino";
import { WebSocketServer } from "ws";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_FORWARDING, Forwarder, validateForwarding } from "../../node/server/forwarder.js";
import { encodeActivations } from "../../protocol/activations.js";
import { ErrorCode, MessageType, PROTOCOL_VERSION, encodeMessage, type Step } from "../../protocol/wire.js";

const VARIANT = "0x" + "cd".repeat(32);
const open: WebSocketServer[] = [];

/** A peer that says hello as a shard server for layers 4:8 and never answers a step. */
async function silentPeer(): Promise<string> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise<void>((resolve) => wss.once("listening", resolve));
  const hello = encodeMessage({
    type: MessageType.ServerInfo,
    requestId: 0,
    protocolVersion: PROTOCOL_VERSION,
    chainId: 1n,
    server: Wallet.createRandom().address,
    variantId: VARIANT,
    firstLayer: 4,
    lastLayer: 8,
    hiddenSize: 8,
    maxSessions: 4,
    maxSessionTokens: 16,
    maxStepTokens: 16,
    maxFrameBytes: 4096,
    pricePerToken: 0n,
    commitments: ZeroAddress,
    challenge: "0x" + "11".repeat(32),
  });
  wss.on("connection", (ws) => ws.send(hello));
  open.push(wss);
  return `ws://127.0.0.1:${(wss.address() as { port: number }).port}`;
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

const forwarder = (o: Partial<typeof DEFAULT_FORWARDING> = {}): Forwarder =>
  new Forwarder({ ...DEFAULT_FORWARDING, ...o }, { variantId: VARIANT, firstLayer: 4 }, pino({ level: "silent" }));

afterEach(async () => {
  for (const wss of open.splice(0)) {
    for (const c of wss.clients) c.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  }
});

describe("Forwarder (the pool of next-hop connections)", () => {
  it("keeps one connection per peer, closes an idle one to make room, and refuses when all are busy", async () => {
    const [a, b, c] = [await silentPeer(), await silentPeer(), await silentPeer()];
    const f = forwarder({ maxPeers: 2, hopTimeoutMs: 60_000 });
    const la = await f.link(f.check(a));
    expect(await f.link(f.check(a))).toBe(la);
    const lb = await f.link(f.check(b));
    expect(f.size).toBe(2);
    // a and b idle: the least recently used (a) goes
    const lc = await f.link(f.check(c));
    expect(f.size).toBe(2);
    // b and c busy with a step that never finishes: no room for a
    const pending = [f.forward(f.check(b), step()), f.forward(f.check(c), step())];
    for (const p of pending) p.catch(() => undefined);
    while (lb.busy + lc.busy < 2) await new Promise((resolve) => setImmediate(resolve)); // the sends are under way
    await expect(f.link(f.check(a))).rejects.toMatchObject({
      wireCode: ErrorCode.Overloaded,
      message: "server holds its maximum of 2 next-hop connections, all busy",
    });
    f.close();
    // closing fails the steps in flight with an error naming the peer
    await expect(pending[0]).rejects.toMatchObject({ wireCode: ErrorCode.Upstream, hop: 1 });
  });

  it("does not send a frame over the peer's announced limit (it would drop the shared link)", async () => {
    const peer = await silentPeer();
    const f = forwarder();
    await expect(f.forward(f.check(peer), step(200))).rejects.toMatchObject({ wireCode: ErrorCode.TooLarge, hop: 1 });
    f.close();
  });

  it("waits longer the more hops are left after the peer", async () => {
    const peer = await silentPeer();
    const f = forwarder({ hopTimeoutMs: 50 });
    const s = { ...step(), route: [{ url: "ws://127.0.0.1:9", sessionId: hexlify(randomBytes(32)), tag: hexlify(randomBytes(32)) }] };
    await expect(f.forward(f.check(peer), s)).rejects.toMatchObject({ wireCode: ErrorCode.Upstream, message: expect.stringContaining("within 100 ms") });
    f.close();
  });

  it("validates its options, naming the bad one", () => {
    expect(() => validateForwarding({ ...DEFAULT_FORWARDING, hopTimeoutMs: 0 })).toThrow("forwarding option hopTimeoutMs must be a positive integer, got 0");
    expect(() => validateForwarding({ ...DEFAULT_FORWARDING, allowedHosts: ["h/x"] })).toThrow(
      'forwarding option allowedHosts: "h/x" is not a host name or address (IPv6 in brackets, e.g. [::1])',
    );
    expect(() => validateForwarding({ ...DEFAULT_FORWARDING, allowedHosts: ["::1"] })).toThrow('"::1" is not a host name');
    expect(() => forwarder({ allowedHosts: ["LOCALHOST", "[::1]"] }).check("ws://localhost:5")).not.toThrow();
    expect(() => forwarder({ allowedHosts: [] }).check("ws://localhost:5")).toThrow("next hop host localhost is not one this server forwards to");
  });
});
