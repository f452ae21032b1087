import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FailoverPipeline } from "../../client/failover.js";
import { GenerationError, generate } from "../../client/generate.js";
import { CandidatePool } from "../../client/route/candidatePool.js";
import { LocalPipeline } from "../../client/localPipeline.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { tinyConfig, writeRandomModel } from "../../engine/model/randomModel.js";
import { Head } from "../../engine/runtime/head.js";
import type { Shard } from "../../engine/runtime/shard.js";
import type { EFedError } from "../../protocol/errors.js";
import { scratchDir } from "../engine/helpers.js";
import { startServer, type RunningServer } from "../node/support.js";
import { runEfed } from "../support/efedProcess.js";

const scratch = scratchDir();
const modelDir = join(scratch.dir, "tiny");
const PROMPT = [1, 5, 9];
const TOKENS = 16;
const FAIL_AT = 8; // session position from which the failing server's layers throw
let model: ModelDirectory;
let expected: number[];
const servers: RunningServer[] = [];

/** A shard that fails every step from session position FAIL_AT on (the server answers with an error). */
function failingFrom(real: Shard): Shard {
  const failing = Object.create(real) as Shard;
  failing.compute = async (hidden, cache) => {
    if (cache.length >= FAIL_AT) throw new Error("the layers failed");
    return real.compute(hidden, cache);
  };
  failing.computeBatch = async (hiddens, caches) => {
    if (caches.some((c) => c.length >= FAIL_AT)) throw new Error("the layers failed");
    return real.computeBatch(hiddens, caches);
  };
  return failing;
}

beforeAll(async () => {
  writeRandomModel(modelDir, tinyConfig(), { seed: 11, dtype: "F16", std: 0.15 });
  model = ModelDirectory.open(modelDir);
  const head = await Head.load(model);
  const local = await LocalPipeline.load(model);
  expected = (await generate(head, local, PROMPT, { maxTokens: TOKENS, temperature: 0 })).generatedIds;
  await local.release();
  await head.release();
  servers.push(await startServer(model, 0, 2, scratch.dir));
  servers.push(await startServer(model, 2, 4, scratch.dir, {}, undefined, undefined, {}, {}, failingFrom));
  servers.push(await startServer(model, 2, 4, scratch.dir)); // the spare
});
afterAll(async () => {
  for (const s of servers) await s.stop();
  model?.close();
  scratch.cleanup();
});

describe("efed generate --route … --spare …", () => {
  const args = (): string[] => ["generate", "--model", modelDir, "--ids", PROMPT.join(","), "--max-tokens", String(TOKENS), "--json", "--route", `${servers[0]!.server.url},${servers[1]!.server.url}`];

  it("replaces a server that fails mid-generation by the spare and prints the uninterrupted tokens", async () => {
    const r = await runEfed(...args(), "--spare", servers[2]!.server.url);
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 0 });
    expect((JSON.parse(r.stdout) as { generatedIds: number[] }).generatedIds).toEqual(expected);
  });

  it("without a spare the same failure ends the generation, naming the server, with the tokens before it", async () => {
    const r = await runEfed(...args());
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as { generatedIds: number[]; finish: string; error: { message: string } };
    expect(out.finish).toBe("error");
    expect(out.generatedIds).toEqual(expected.slice(0, FAIL_AT - PROMPT.length + 1));
    expect(out.error.message).toContain(`server 2 of 2 on the route (${servers[1]!.server.url}) failed step ${FAIL_AT - PROMPT.length + 1}`);
  });

  it("a spare that does not cover the failed span: the failure keeps its code and says why nothing replaced it", async () => {
    const wrongSpan = await startServer(model, 0, 2, scratch.dir);
    servers.push(wrongSpan);
    const pool = new CandidatePool();
    pool.addUnmeasured([servers[0]!, servers[1]!, wrongSpan].map((s) => ({ url: s.server.url })));
    const head = await Head.load(model);
    const pipeline = await FailoverPipeline.connect([servers[0]!.server.url, servers[1]!.server.url], 4, pool.replanner({ numLayers: 4 }));
    try {
      const failed = await generate(head, pipeline, PROMPT, { maxTokens: TOKENS, temperature: 0 }).catch((e: unknown) => e as GenerationError);
      expect(failed).toBeInstanceOf(GenerationError);
      const err = (failed as GenerationError).cause as EFedError;
      expect(err.code).toBe("SERVER_13"); // the server's internal error: its layers threw
      expect(err.message).toMatch(
        new RegExp(`^server 2 of 2 on the route \\(${servers[1]!.server.url}\\) failed step 6: .*; no route around it: no route covers the model's 4 layers: no usable server serves layer\\(s\\) 2–3$`),
      );
      expect((failed as GenerationError).partial.generatedIds).toEqual(expected.slice(0, 6));
    } finally {
      pipeline.close();
      await head.release();
    }
  });

  it("rejects a --spare that is not a ws:// URL, naming it", async () => {
    const r = await runEfed(...args(), "--spare", "http://127.0.0.1:1");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`"http://127.0.0.1:1" is not a ws:// or wss:// URL`);
  });
});
