import { createServer, type Server, type Socket } from "node:net";
import { Wallet, ZeroAddress, hexlify, randomBytes, type SigningKey } from "ethers";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ModelDirectory } from "../../engine/model/modelDir.js";
import { Head } from "../../engine/runtime/head.js";
import { receiptDomain } from "../../protocol/eip712.js";
import { receiptLeaf } from "../../protocol/receipt.js";
import { chainOf, recoverReceiptChainSigner, signReceiptChain } from "../../protocol/receiptChain.js";
import type { StepReceipt } from "../../protocol/wire.js";
import { GenerationError, generate } from "../../client/generate.js";
import { LocalPipeline } from "../../client/localPipeline.js";
import { ReceiptError, RemotePipeline, StepTimeoutError, type RemotePipelineOptions, type VerifiedReceipt } from "../../client/remotePipeline.js";
import { randomModel, scratchDir } from "../engine/helpers.js";
import { startServer, type RunningServer } from "../node/support.js";
import type { StepTiming } from "../../client/shardClient.js";
import { DEFAULT_ROUTE_TIMING } from "../../client/routeOptions.js";
import { freePort } from "../support/hardhatNode.js";
import { faultRelay, type FaultHooks, type FaultRelay } from "./support/faultRelay.js";

const scratch = scratchDir();
let model: ModelDirectory;
let head: Head;
let expected: number[];
const PROMPT = [1, 9, 23, 4, 77, 31];
const TOKENS = 12;
const VARIANT = "0x" + "ab".repeat(32);
/** Short deadlines keep the hung-server cases short; the outcome does not depend on them. */
const FAST: RemotePipelineOptions = { stepTimeoutMs: 700, connectTimeoutMs: 700 };

beforeAll(async () => {
  model = randomModel(scratch.dir, "pipeline", { num_hidden_layers: 4, max_position_embeddings: 64 });
  head = await Head.load(model);
  expected = (await generate(head, await LocalPipeline.load(model), PROMPT, { maxTokens: TOKENS, temperature: 0 })).generatedIds;
});
afterAll(() => scratch.cleanup());

// everything a test starts is stopped, whatever the outcome
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Two servers (layers 0:2 and 2:4), with a fault relay in front of server `faulty` (0 or 1). */
async function route(
  faulty: number,
  hooks: (servers: RunningServer[]) => FaultHooks = () => ({}),
  signEvery?: number,
): Promise<{ servers: RunningServer[]; relay: FaultRelay; urls: string[] }> {
  const servers: RunningServer[] = [];
  for (const [first, last] of [[0, 2], [2, 4]] as const) {
    const s = await startServer(model, first, last, scratch.dir, {}, VARIANT, undefined, {}, signEvery === undefined ? {} : { signEvery });
    cleanups.push(() => s.stop());
    servers.push(s);
  }
  const relay = await faultRelay(servers[faulty]!.server.url, hooks(servers));
  cleanups.push(() => relay.close());
  const urls = servers.map((s, i) => (i === faulty ? relay.url : s.server.url));
  return { servers, relay, urls };
}

async function connect(urls: string[], options: RemotePipelineOptions): Promise<RemotePipeline> {
  const pipeline = await RemotePipeline.connect(urls, model.config.numLayers, options);
  cleanups.push(() => pipeline.close());
  return pipeline;
}

/** The GenerationError a generation fails with. */
async function failure(pipeline: RemotePipeline): Promise<GenerationError> {
  const err = await generate(head, pipeline, PROMPT, { maxTokens: TOKENS, temperature: 0 }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GenerationError);
  return err as GenerationError;
}

/** `m` with its output hash replaced: a receipt that misstates what the server sent. */
function misstated(m: StepReceipt): StepReceipt {
  return { ...m, signed: { ...m.signed, outputHash: hexlify(randomBytes(32)) } };
}

/** `m` with its chain signature (if any) replaced by `key`'s over a made-up chain head. */
function forged(m: StepReceipt, key: SigningKey): StepReceipt {
  if (m.signed.chainSignature === undefined) return m;
  const chainSignature = signReceiptChain(key, receiptDomain(31337n, ZeroAddress), { sessionId: m.sessionId, server: m.signed.server, lastStep: m.step, head: hexlify(randomBytes(32)) });
  return { ...m, signed: { ...m.signed, chainSignature } };
}

/** The highest step index the relay passed on. */
const lastStep = (relay: FaultRelay): number => Math.max(...relay.steps.map((s) => Number(s.step)));

describe("RemotePipeline: options", () => {
  it("refuses a bad timing option before connecting, naming it", async () => {
    const cases: [RemotePipelineOptions, string][] = [
      [{ stepTimeoutMs: 0 }, "stepTimeoutMs must be an integer >= 1, got 0"],
      [{ connectTimeoutMs: 1.5 }, "connectTimeoutMs must be an integer >= 1, got 1.5"],
      [{ maxUnverifiedSteps: -1 }, "maxUnverifiedSteps must be an integer >= 0, got -1"],
      [{ stepTimeoutPerTokenMs: Number.NaN }, "stepTimeoutPerTokenMs must be an integer >= 0, got NaN"],
    ];
    for (const [options, message] of cases) {
      await expect(RemotePipeline.connect(["ws://127.0.0.1:1"], 4, options)).rejects.toThrow(message);
    }
  });
});

describe("RemotePipeline: a route with a server that cannot be reached", () => {
  it("fails at connect naming the refused server, and closes the connection it opened to the other", async () => {
    const { relay } = await route(0);
    const closedPort = `ws://127.0.0.1:${await freePort()}`;
    const err = await RemotePipeline.connect([relay.url, closedPort], model.config.numLayers, FAST).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "CONNECT_FAILED", details: { url: closedPort } });
    expect((err as Error).message).toMatch(new RegExp(`^server 2 of 2 on the route \\(${closedPort}\\) cannot be reached: cannot connect to ${closedPort}: .*ECONNREFUSED`));
    await relay.allClosed(); // the connection to server 1 was dropped: this resolves
    expect(relay.openConnections()).toBe(0);
  });

  it("fails at connect naming a server that accepts the connection and never answers", async () => {
    const { relay } = await route(1);
    const held: Socket[] = [];
    const silent: Server = createServer((socket) => held.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise<void>((resolve) => (held.forEach((s) => s.destroy()), silent.close(() => resolve()))));
    const silentUrl = `ws://127.0.0.1:${(silent.address() as { port: number }).port}`;
    const err = await RemotePipeline.connect([silentUrl, relay.url], model.config.numLayers, FAST).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "TIMEOUT", message: `server 1 of 2 on the route (${silentUrl}) cannot be reached: no server info from ${silentUrl} within 700 ms` });
    await relay.allClosed();
  });
});

describe("RemotePipeline: a server that hangs or dies mid-generation", () => {
  for (const forward of [false, true]) {
    const mode = forward ? "forwarded" : "relayed";
    it(`${mode}: a hung server fails the step with a StepTimeoutError naming it; the tokens before are kept`, async () => {
      const HANG_AT = 4;
      const { relay, urls } = await route(1, () => ({ onStep: (m, self) => m.step === BigInt(HANG_AT) && self.freeze() }));
      const pipeline = await connect(urls, { ...FAST, forward });
      const err = await failure(pipeline);
      expect(err.cause).toBeInstanceOf(StepTimeoutError);
      expect(err.cause).toMatchObject({ url: relay.url, index: 1, routeLength: 2 });
      expect(err.message).toBe(`server 2 of 2 on the route (${relay.url}) did not deliver ${forward ? "its part of" : "the output of"} step ${HANG_AT} within ${700 + DEFAULT_ROUTE_TIMING.stepTimeoutPerTokenMs} ms`);
      expect(err.partial).toEqual({ promptIds: PROMPT, generatedIds: expected.slice(0, HANG_AT), finish: "error" });
    });

    it(`${mode}: a server whose connections drop fails the step with an error naming it; the tokens before are kept`, async () => {
      const DIE_AT = 3;
      const { relay, urls } = await route(1, () => ({ onStep: (m, self) => m.step === BigInt(DIE_AT) && self.kill() }));
      const pipeline = await connect(urls, { ...FAST, forward });
      const err = await failure(pipeline);
      expect(err.message).toMatch(new RegExp(`^server 2 of 2 on the route \\(${relay.url}\\) failed step ${DIE_AT}: `));
      expect(err.cause).toMatchObject({ details: { url: relay.url } });
      expect(err.partial.generatedIds).toEqual(expected.slice(0, DIE_AT));
    });
  }
});

describe("RemotePipeline: a forwarded route blames the first server that shows no progress", () => {
  it("the first server hung: it is named, not the one after it that never got the step", async () => {
    const HANG_AT = 2;
    const { relay, urls } = await route(0, () => ({ onStep: (m, self) => m.step === BigInt(HANG_AT) && self.freeze() }));
    const err = await failure(await connect(urls, FAST));
    expect(err.cause).toMatchObject({ name: "StepTimeoutError", url: relay.url, index: 0 });
    expect(err.partial.generatedIds).toEqual(expected.slice(0, HANG_AT));
  });
});

describe("RemotePipeline: receipts that do not check out stop generation within a bounded number of steps", () => {
  const BAD_FROM = 3;
  for (const forward of [false, true]) {
    const mode = forward ? "forwarded" : "relayed";
    it(`${mode}: receipts that misstate a hash from step k, receipts held back: no step after k + 1 is sent`, async () => {
      const r = await route(1, () => ({
        holdReceiptsUntilIdleMs: 150,
        rewriteReceipt: (m) => (m.step < BigInt(BAD_FROM) ? m : misstated(m)),
      }));
      const pipeline = await connect(r.urls, { forward });
      const err = await failure(pipeline);
      expect(err.cause).toBeInstanceOf(ReceiptError);
      expect(err.cause).toMatchObject({ url: r.relay.url, step: BigInt(BAD_FROM) });
      expect(err.message).toContain(`${r.relay.url}: receipt for step ${BAD_FROM} states output hash`);
      expect(lastStep(r.relay)).toBeGreaterThanOrEqual(BAD_FROM);
      expect(lastStep(r.relay)).toBeLessThanOrEqual(BAD_FROM + 1);
      // the tokens of the bad step and after are not reported
      expect(err.partial.generatedIds).toEqual(expected.slice(0, BAD_FROM));
    });
  }

  it("signatures by another key from step k (a server that signs every step): no step after k + N is sent (N = maxUnverifiedSteps)", async () => {
    const N = 2;
    const impostor = Wallet.createRandom().signingKey;
    const r = await route(1, () => ({ rewriteReceipt: (m) => (m.step < BigInt(BAD_FROM) ? m : forged(m, impostor)) }), 1);
    const pipeline = await connect(r.urls, { maxUnverifiedSteps: N });
    const err = await failure(pipeline);
    expect(err.cause).toBeInstanceOf(ReceiptError);
    expect(err.cause).toMatchObject({ url: r.relay.url, step: BigInt(BAD_FROM) });
    expect(err.message).toContain(`${r.relay.url}: its receipts through step ${BAD_FROM} are signed by`);
    expect(lastStep(r.relay)).toBeGreaterThanOrEqual(BAD_FROM);
    expect(lastStep(r.relay)).toBeLessThanOrEqual(BAD_FROM + N);
    expect(err.partial.generatedIds).toEqual(expected.slice(0, BAD_FROM));
  });
});

describe("RemotePipeline: receipt chains", () => {
  it("reports every receipt once its server signed the chain holding it: every 4 steps, and the rest as the session closes", async () => {
    const r = await route(1, () => ({}), 4);
    const seen: VerifiedReceipt[] = [];
    const pipeline = await connect(r.urls, { onReceipt: (v) => seen.push(v) });
    expect((await generate(head, pipeline, PROMPT, { maxTokens: TOKENS, temperature: 0 })).generatedIds).toEqual(expected);
    for (const s of r.servers) {
      const mine = seen.filter((v) => v.receipt.server === s.wallet.address);
      expect(mine.map((v) => [v.receipt.step, v.chain.lastStep])).toEqual(Array.from({ length: TOKENS }, (_, i) => [BigInt(i), BigInt(Math.min(4 * Math.floor(i / 4) + 3, TOKENS - 1))]));
      // every chain recovers to the server, over the receipts it holds
      const last = mine.at(-1)!.chain;
      expect(last.head).toBe(chainOf(mine.map((v) => receiptLeaf(v.receipt))));
      expect(recoverReceiptChainSigner(receiptDomain(31337n, ZeroAddress), last, last.signature)).toBe(s.wallet.address);
    }
  });

  it("a server that closes its session without signing its last receipts fails the sequence's close, naming it", async () => {
    const r = await route(1, () => ({ rewriteClosed: (m) => ({ type: m.type, requestId: m.requestId, sessionId: m.sessionId }) }), 16);
    const pipeline = await connect(r.urls, {});
    const err = await generate(head, pipeline, PROMPT, { maxTokens: TOKENS, temperature: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GenerationError);
    // the tokens came, but none is covered by the server's signature: none is reported
    expect((err as GenerationError).partial.generatedIds).toEqual([]);
    expect((err as GenerationError).cause).toBeInstanceOf(ReceiptError);
    expect(((err as GenerationError).cause as Error).message).toBe(
      `${r.relay.url}: closing its session gave no signature, but its receipts of steps 0..${TOKENS - 1} are unsigned`,
    );
  });
});

describe("RemotePipeline: session length", () => {
  it("asks each server for prompt + max tokens, and a server that cannot hold them refuses at open", async () => {
    const r = await route(1);
    const pipeline = await connect(r.urls, {});
    const result = await generate(head, pipeline, PROMPT, { maxTokens: TOKENS, temperature: 0 });
    expect(result.generatedIds).toEqual(expected);
    expect(r.relay.opened.map((m) => m.maxLength)).toEqual([PROMPT.length + TOKENS]);

    const small = await startServer(model, 2, 4, scratch.dir, { maxSessionTokens: PROMPT.length + TOKENS - 1 }, VARIANT);
    cleanups.push(() => small.stop());
    const refusing = await connect([r.urls[0]!, small.server.url], {});
    const err = await generate(head, refusing, PROMPT, { maxTokens: TOKENS, temperature: 0 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "SERVER_8", details: { url: small.server.url } });
    expect((err as Error).message).toBe(
      `server 2 of 2 on the route (${small.server.url}) refused a session of ${PROMPT.length + TOKENS} tokens: session length ${PROMPT.length + TOKENS} is outside 1..${PROMPT.length + TOKENS - 1}`,
    );
  });

  it("refuses prompt + max tokens beyond the model's context before opening any session", async () => {
    const r = await route(1);
    const pipeline = await connect(r.urls, {});
    const context = model.config.maxPositionEmbeddings;
    await expect(generate(head, pipeline, PROMPT, { maxTokens: context - PROMPT.length + 1, temperature: 0 })).rejects.toThrow(
      `a prompt of ${PROMPT.length} tokens and max tokens ${context - PROMPT.length + 1} make ${context + 1} tokens, over the model's context of ${context} (max_position_embeddings)`,
    );
    expect(r.relay.opened).toEqual([]);
  });
});

describe("RemotePipeline: onStepTiming", () => {
  it("reports each relayed step once per server, with its session and step, and nothing for forwarded steps", async () => {
    const { servers } = await route(0);
    const urls = servers.map((s) => s.server.url);
    const seen: StepTiming[] = [];
    const relayed = await RemotePipeline.connect(urls, model.config.numLayers, { forward: false, onStepTiming: (t) => seen.push(t) });
    cleanups.push(() => relayed.close());
    const r = await generate(head, relayed, PROMPT, { maxTokens: TOKENS, temperature: 0 });
    expect(r.generatedIds).toEqual(expected);
    // the prefill and TOKENS - 1 decode steps, on each of the 2 servers
    expect(seen).toHaveLength(2 * TOKENS);
    const steps = (sessionId: string): bigint[] => seen.filter((t) => t.sessionId === sessionId).map((t) => t.step);
    const sessions = [...new Set(seen.map((t) => t.sessionId))];
    expect(sessions).toHaveLength(2);
    for (const s of sessions) expect(steps(s)).toEqual(Array.from({ length: TOKENS }, (_, i) => BigInt(i)));
    for (const t of seen) {
      expect(Number.isFinite(t.sendToResultMs) && t.sendToResultMs >= 0).toBe(true);
      expect(Number.isFinite(t.resultToReceiptMs) && t.resultToReceiptMs >= 0).toBe(true);
    }
    const forwarded: unknown[] = [];
    const pipeline = await RemotePipeline.connect(urls, model.config.numLayers, { forward: true, onStepTiming: (t) => forwarded.push(t) });
    cleanups.push(() => pipeline.close());
    expect((await generate(head, pipeline, PROMPT, { maxTokens: TOKENS, temperature: 0 })).generatedIds).toEqual(expected);
    expect(forwarded).toEqual([]);
  });
});
