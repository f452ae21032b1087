import { hexlify, randomBytes } from "ethers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ModelDirectory } from "../../../engine/model/modelDir.js";
import { encodeActivations } from "../../../protocol/activations.js";
import { ErrorCode } from "../../../protocol/wire.js";
import { ShardConnection, ShardRequestError } from "../../../client/shardClient.js";
import { SessionTable } from "../../../node/server/sessions.js";
import { DEFAULT_SERVER_LIMITS } from "../../../node/server/limits.js";
import { randomModel, scratchDir } from "../../engine/helpers.js";
import { startServer, type RunningServer } from "../support.js";

const scratch = scratchDir();
let model: ModelDirectory;
let running: RunningServer;
const sid = (): string => hexlify(randomBytes(32));

beforeAll(async () => {
  model = randomModel(scratch.dir, "limits");
  running = await startServer(model, 0, model.config.numLayers, scratch.dir, { maxSessions: 3, maxSessionTokens: 8, maxStepTokens: 4 });
});
afterAll(async () => {
  await running.stop();
  scratch.cleanup();
});

async function expectServerError(p: Promise<unknown>, code: number, message: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ShardRequestError);
  expect((err as ShardRequestError).code).toBe(`SERVER_${code}`);
  expect((err as Error).message).toContain(message);
}

function input(rows: number) {
  return encodeActivations(new Float32Array(rows * model.config.hiddenSize).fill(0.5), rows, model.config.hiddenSize, "fp32");
}

describe("server limits: an over-limit request gets a clear error and harms no other session", () => {
  it("refuses sessions past the maximum, too long, or already open", async () => {
    const a = await ShardConnection.connect(running.server.url);
    const b = await ShardConnection.connect(running.server.url);
    const first = sid();
    await a.openSession(first, 8);
    await expectServerError(a.openSession(first, 8), ErrorCode.SessionExists, `session ${first} is already open`);
    await expectServerError(a.openSession(sid(), 9), ErrorCode.SessionTooLong, "session length 9 is outside 1..8");
    await a.openSession(sid(), 8);
    await b.openSession(sid(), 8);
    await expectServerError(b.openSession(sid(), 8), ErrorCode.TooManySessions, "server holds its maximum of 3 sessions");
    // the refused requests left the open sessions working
    const r = await a.step({ sessionId: first, step: 0n, position: 0, outputEncoding: "fp32", input: input(2), route: [] });
    expect(r.output.rows).toBe(2);
    a.close();
    b.close();
    // closing a connection drops its sessions
    for (let i = 0; i < 50 && running.server.sessionCount > 0; i++) await new Promise((res) => setTimeout(res, 20));
    expect(running.server.sessionCount).toBe(0);
  });

  it("refuses steps that overflow a session, and steps of another connection's session", async () => {
    const a = await ShardConnection.connect(running.server.url);
    const b = await ShardConnection.connect(running.server.url);
    const s = sid();
    await a.openSession(s, 8);
    await a.step({ sessionId: s, step: 0n, position: 0, outputEncoding: "fp32", input: input(4), route: [] });
    await a.step({ sessionId: s, step: 1n, position: 4, outputEncoding: "fp32", input: input(3), route: [] });
    await expectServerError(
      a.step({ sessionId: s, step: 2n, position: 7, outputEncoding: "fp32", input: input(2), route: [] }),
      ErrorCode.SessionTooLong,
      "would reach 9 tokens, over its maximum of 8",
    );
    await expectServerError(
      b.step({ sessionId: s, step: 2n, position: 7, outputEncoding: "fp32", input: input(1), route: [] }),
      ErrorCode.UnknownSession,
      "is not open on this connection",
    );
    await expectServerError(
      a.step({ sessionId: s, step: 5n, position: 7, outputEncoding: "fp32", input: input(1), route: [] }),
      ErrorCode.BadPosition,
      "expects step 2, got 5",
    );
    // the session still takes its last token
    const r = await a.step({ sessionId: s, step: 2n, position: 7, outputEncoding: "fp32", input: input(1), route: [] });
    expect(r.step).toBe(2n);
    a.close();
    b.close();
  });
});

describe("SessionTable", () => {
  const cache = () => ({ length: 0, keys: [], values: [] });

  it("enforces the memory budget per request, counting steps in flight, and one step in flight per session", () => {
    const table = new SessionTable({ ...DEFAULT_SERVER_LIMITS, memoryBudgetBytes: 1000 }, 100);
    const owner = { address: "10.0.0.1" };
    const s = table.open("0x01", owner, 100, cache(), 0);
    const t = table.open("0x02", owner, 100, cache(), 0);
    table.admit(s, 10); // 10 tokens in flight: the whole budget
    expect(table.kvBytes).toBe(1000);
    expect(() => table.admit(s, 1)).toThrow("session 0x01 already has a step in flight: send one step at a time");
    expect(() => table.admit(t, 1)).toThrow("KV caches would take 1100 bytes, over the budget of 1000");
    s.cache.length = 8; // the step ran, keeping 8 of its tokens' worth
    table.finish(s, 5);
    expect(table.kvBytes).toBe(800);
    expect(() => table.admit(t, 2)).not.toThrow();
    expect(() => table.admit(s, 1)).toThrow("KV caches would take 1100 bytes, over the budget of 1000");
  });

  it("limits sessions per connection and per address", () => {
    const table = new SessionTable({ ...DEFAULT_SERVER_LIMITS, maxSessionsPerConnection: 2, maxSessionsPerAddress: 3 }, 1);
    const [a, b, c] = [{ address: "10.0.0.1" }, { address: "10.0.0.1" }, { address: "10.0.0.2" }];
    table.open("0x01", a, 10, cache(), 0);
    table.open("0x02", a, 10, cache(), 0);
    expect(() => table.open("0x03", a, 10, cache(), 0)).toThrow("this connection holds its maximum of 2 sessions");
    table.open("0x03", b, 10, cache(), 0);
    expect(() => table.open("0x04", b, 10, cache(), 0)).toThrow("address 10.0.0.1 holds its maximum of 3 sessions");
    table.open("0x04", c, 10, cache(), 0); // another address is not affected
    expect(table.dropOwner(a)).toBe(2);
    table.open("0x05", b, 10, cache(), 0); // dropping a's sessions freed the address's share
    expect(table.countOf(b)).toBe(2);
  });

  it("evicts only sessions idle past the timeout", () => {
    const table = new SessionTable({ ...DEFAULT_SERVER_LIMITS, idleTimeoutMs: 1000 }, 1);
    const owner = { address: "10.0.0.1" };
    table.open("0x01", owner, 10, cache(), 0);
    table.open("0x02", owner, 10, cache(), 900);
    expect(table.evictIdle(1500)).toEqual(["0x01"]);
    expect(table.size).toBe(1);
    expect(() => table.get("0x02", owner)).not.toThrow();
    expect(() => table.get("0x02", { address: "10.0.0.1" })).toThrow("session 0x02 is not open on this connection");
  });
});
