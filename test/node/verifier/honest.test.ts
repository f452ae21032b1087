import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelDirectory } from "../../../engine/model/modelDir.js";
import { Head } from "../../../engine/runtime/head.js";
import { compressModel } from "../../../node/compress/compressModel.js";
import type { AuditReport } from "../../../node/verifier/audit.js";
import { DEFAULT_TOLERANCE, QUANTIZED_TOLERANCE } from "../../../node/verifier/compareOutput.js";
import { randomModel, scratchDir } from "../../engine/helpers.js";
import type { RunningServer } from "../support.js";
import { Replayers, auditAt, fetchFrom, generateOn, serveLayers } from "./harness.js";

/**
 * Honest servers, audited after serving real generations in every way a step can be computed:
 * relayed and forwarded routes, fp32/fp16/int8 wires, concurrent sessions whose decode steps run
 * batched, a prefill the server runs in chunks, a compressed (MatMulNBits) variant. Every audit
 * must pass every step: zero accusations.
 */
const scratch = scratchDir();
const PROMPT = [5, 17, 3, 60, 41];
let model: ModelDirectory;
let head: Head;
const replayers = new Replayers();
const servers: RunningServer[] = [];

beforeAll(async () => {
  // head_dim 16: the fused-attention graph, whose decode steps batch across sessions
  model = randomModel(scratch.dir, "verifier-honest", { hidden_size: 64, intermediate_size: 96, max_position_embeddings: 256 });
  head = await Head.load(model);
});
afterAll(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
  await replayers.release();
  scratch.cleanup();
});

async function serve(first: number, last: number, m = model, variantId?: string): Promise<RunningServer> {
  const s = await serveLayers(m, first, last, scratch.dir, variantId === undefined ? {} : { variantId });
  servers.push(s);
  return s;
}

/** Every step passed, and the report covers exactly `steps` steps. */
function expectPass(report: AuditReport, steps: number): void {
  expect(report.steps.filter((s) => s.status !== "pass")).toEqual([]);
  expect(report.verdict).toBe("pass");
  expect(report.steps.map((s) => s.step)).toEqual(Array.from({ length: steps }, (_, i) => BigInt(i)));
}

describe("auditing honest servers", () => {
  for (const forward of [false, true]) {
    for (const encoding of ["fp32", "fp16", "int8"] as const) {
      it(`passes every step of a ${forward ? "forwarded" : "relayed"} two-server route on the ${encoding} wire`, async () => {
        const route = [await serve(0, 2), await serve(2, 4)];
        const g = await generateOn(head, route, PROMPT, { maxTokens: 8, encoding, forward });
        for (const [i, [first, last]] of [[0, 2], [2, 4]].entries()) {
          const prefix = await fetchFrom(route[i]!, g.sessionIds[0]![i]!, BigInt(g.steps - 1));
          const report = await auditAt(replayers, model, route[i]!, first!, last!, prefix);
          expectPass(report, g.steps);
          expect(report.replayedRows).toBe(PROMPT.length + g.steps - 1);
        }
      });
    }
  }

  it("passes concurrent sessions whose decode steps ran batched", async () => {
    const s = await serve(0, 4);
    const g = await generateOn(head, [s], PROMPT, { maxTokens: 10, count: 6 });
    expect(Math.max(...s.server.recentBatchSizes)).toBeGreaterThan(1);
    for (const [id] of g.sessionIds) expectPass(await auditAt(replayers, model, s, 0, 4, await fetchFrom(s, id!, 9n)), 10);
  });

  it("passes a prefill of 150 rows that the server ran in chunks of 64", async () => {
    const s = await serve(0, 4);
    const prompt = Array.from({ length: 150 }, (_, i) => (i * 7) % 90);
    const g = await generateOn(head, [s], prompt, { maxTokens: 4 });
    const report = await auditAt(replayers, model, s, 0, 4, await fetchFrom(s, g.sessionIds[0]![0]!, 3n));
    expectPass(report, 4);
    expect(report.steps.map((x) => x.rows)).toEqual([150, 1, 1, 1]);
  });

  // int4 variants pin accuracy level 0 and are held to the dense tolerance; int8 ones run at level 4 (the quantized one)
  for (const [method, tolerance] of [["int8", QUANTIZED_TOLERANCE], ["int4", DEFAULT_TOLERANCE]] as const) {
    for (const encoding of ["fp32", "fp16", "int8"] as const) {
      it(`passes a server of a ${method} (MatMulNBits) compressed variant on the ${encoding} wire, single and batched decode, at tolerance ${tolerance}`, async () => {
        const dir = join(scratch.dir, `verifier-${method}-${encoding}`);
        const { variantId } = await compressModel(model.dir, dir, { method });
        const compressed = ModelDirectory.open(dir);
        const s = await serve(0, 4, compressed, variantId);
        const g = await generateOn(head, [s], PROMPT, { maxTokens: 8, encoding, count: 6 });
        expect(Math.max(...s.server.recentBatchSizes)).toBeGreaterThan(1);
        for (const [id] of g.sessionIds) {
          const report = await auditAt(replayers, compressed, s, 0, 4, await fetchFrom(s, id!, 7n), variantId);
          expect(report.tolerance).toBe(tolerance);
          expectPass(report, 8);
        }
      });
    }
  }
});
