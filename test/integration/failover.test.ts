import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FailoverPipeline, type FailoverEvent } from "../../client/failover.js";
import { generate, type GenerateOptions, type LayerPipeline } from "../../client/generate.js";
import { LocalPipeline } from "../../client/localPipeline.js";
import type { RemoteSequence } from "../../client/remotePipeline.js";
import { CandidatePool } from "../../client/route/candidatePool.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { Head } from "../../engine/runtime/head.js";
import { scratchDir } from "../engine/helpers.js";
import { startServer, type RunningServer } from "../node/support.js";
import { beforeEachStep } from "../support/stepHook.js";

// The shipped model: 8 layers, a context of 512 tokens. An 8-token prompt and 504 generated tokens
// fill it; a server is killed before steps 64, 128, …, 448 (7 kills), alternating between the spans.
const scratch = scratchDir();
const root = new URL("../..", import.meta.url).pathname;
const PROMPT = [1, 52, 311, 9, 87, 1400, 23, 5];
const TOKENS = 504;
const KILL_EVERY = 64;
const SPANS = [
  [0, 4],
  [4, 8],
] as const;
let model: ModelDirectory;
let head: Head;

beforeAll(async () => {
  model = ModelDirectory.open(join(root, "models/kjv-llama-6m"));
  head = await Head.load(model);
});
afterAll(async () => {
  await head?.release();
  model?.close();
  scratch.cleanup();
});

async function uninterrupted(options: GenerateOptions): Promise<number[]> {
  const local = await LocalPipeline.load(model, [4]);
  try {
    return (await generate(head, local, PROMPT, options)).generatedIds;
  } finally {
    await local.release();
  }
}

/**
 * Runs a generation on a route over two spans with one spare per span. Before every KILL_EVERY-th
 * step, the server of the route that serves the next span in turn is stopped (its connections drop)
 * and a fresh spare for that span joins the pool: the route always has exactly one spare per span.
 */
async function generateWithKills(options: GenerateOptions, forward: boolean): Promise<{ ids: number[]; events: FailoverEvent[]; killed: string[]; sessionIds: readonly string[] }> {
  const servers = new Map<string, RunningServer>();
  const pool = new CandidatePool();
  const addServer = async (span: (typeof SPANS)[number]): Promise<void> => {
    const s = await startServer(model, span[0], span[1], scratch.dir);
    servers.set(s.server.url, s);
    pool.addUnmeasured([{ url: s.server.url }]);
  };
  try {
    for (const span of [...SPANS, ...SPANS]) await addServer(span);
    await pool.measure();
    const plan = { numLayers: model.config.numLayers };
    const events: FailoverEvent[] = [];
    const killed: string[] = [];
    const route = pool.plan(plan).servers.map((c) => c.url);
    const failover = await FailoverPipeline.connect(route, model.config.numLayers, pool.replanner(plan), { forward, onFailover: (e) => events.push(e) });
    let sequence: RemoteSequence | undefined;
    const recorded: LayerPipeline = { openSequence: async (maxLength) => (sequence = await failover.openSequence(maxLength)) };
    const killing = beforeEachStep(recorded, async (step) => {
      if (step === 0 || step % KILL_EVERY !== 0) return;
      const span = (step / KILL_EVERY - 1) % SPANS.length;
      const victim = failover.route[span]!;
      killed.push(victim);
      await servers.get(victim)!.stop();
      await addServer(SPANS[span]!);
    });
    try {
      const ids = (await generate(head, killing, PROMPT, options)).generatedIds;
      return { ids, events, killed, sessionIds: sequence!.sessionIds };
    } finally {
      failover.close();
    }
  } finally {
    for (const s of servers.values()) await s.stop();
  }
}

describe("failover: a route that loses a server every 64 tokens", () => {
  const cases = [
    { name: "greedy, forwarded server to server", options: { maxTokens: TOKENS, temperature: 0 }, forward: true },
    // shorter, for CI time: what it adds is the sampler's RNG state carrying on across failovers, and relaying
    { name: "sampled (seed 7), relayed by the client", options: { maxTokens: 256, temperature: 0.8, topP: 0.95, seed: 7 }, forward: false },
  ];
  for (const { name, options, forward } of cases) {
    it(`${name}: completes all ${options.maxTokens} tokens, equal to an uninterrupted run`, async () => {
      const expected = await uninterrupted(options);
      expect(expected.length).toBe(options.maxTokens);
      const { ids, events, killed, sessionIds } = await generateWithKills(options, forward);
      expect(ids).toEqual(expected);
      // the sequence names its sessions on every route it ran on (what the gateway's cost headers add up)
      expect(sessionIds.length).toBe(SPANS.length * (1 + killed.length));
      expect(new Set(sessionIds).size).toBe(sessionIds.length);

      // one failover per kill, blaming the killed server, replaying the prompt and every token up to the failed step
      const kills = Math.floor((options.maxTokens - 1) / KILL_EVERY);
      expect(killed.length).toBe(kills);
      expect(events.map((e) => e.failedUrl)).toEqual(killed);
      expect(events.map((e) => e.replayedTokens)).toEqual(killed.map((_, i) => PROMPT.length + KILL_EVERY * (i + 1)));
      // the route after each failover has two servers, none of them killed so far
      events.forEach((e, i) => {
        expect(e.route.length).toBe(SPANS.length);
        for (const k of killed.slice(0, i + 1)) expect(e.route).not.toContain(k);
      });
      const stalls = events.map((e) => e.stallMs).sort((a, b) => a - b);
      console.info(`${name}: ${events.length} failovers, stall median ${stalls[Math.floor(stalls.length / 2)]!.toFixed(0)} ms, max ${stalls.at(-1)!.toFixed(0)} ms`);
    }, 240_000);
  }
});
