import { DatabaseSync } from "node:sqlite";
import { cpSync } from "node:fs";
import { join } from "node:path";
import { buildManifest, writeManifest } from "../../../engine/model/manifest.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelDirectory } from "../../../engine/model/modelDir.js";
import { tinyConfig, writeRandomModel } from "../../../engine/model/randomModel.js";
import { Head } from "../../../engine/runtime/head.js";
import { Shard } from "../../../engine/runtime/shard.js";
import { compressModel } from "../../../node/compress/compressModel.js";
import { auditSession, type AuditReport } from "../../../node/verifier/audit.js";
import { DEFAULT_TOLERANCE } from "../../../node/verifier/compareOutput.js";
import { randomModel, scratchDir } from "../../engine/helpers.js";
import { faultyShard, type Fault } from "../../../scripts/devnet/faultyShard.js";
import type { RunningServer } from "../support.js";
import { Replayers, VARIANT, auditAt, fetchFrom, generateOn, serveLayers, verifier } from "./harness.js";

/**
 * Cheating servers (scripts/devnet/faultyShard.ts), honest for the prefill and the first decode
 * steps, then faulty from position FAULT_FROM on: the audit must pass the honest steps and fail
 * the first faulty one on the replay; tampered evidence fails its hash or signature check; a
 * withheld step is reported as withholding.
 */
const scratch = scratchDir();
const PROMPT = [5, 17, 3, 60, 41];
const FAULT_FROM = PROMPT.length + 2; // step 3: the prefill, then decode steps 1 and 2 are honest
const FAULTY_STEP = 3n;
let model: ModelDirectory;
let head: Head;
const replayers = new Replayers();
const servers: RunningServer[] = [];
const extraShards: Shard[] = [];

beforeAll(async () => {
  model = randomModel(scratch.dir, "verifier-faults", { hidden_size: 64, intermediate_size: 96, max_position_embeddings: 256 });
  head = await Head.load(model);
});
afterAll(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
  for (const s of extraShards) await s.release();
  await replayers.release();
  scratch.cleanup();
});

async function serve(wrap?: (s: Shard) => Shard): Promise<RunningServer> {
  const s = await serveLayers(model, 0, 4, scratch.dir, wrap === undefined ? {} : { wrap });
  servers.push(s);
  return s;
}

/** Serves one 8-step generation on `s` and audits its whole session. */
async function generateAndAudit(s: RunningServer, encoding: "fp32" | "fp16" | "int8" = "fp32"): Promise<AuditReport> {
  const g = await generateOn(head, [s], PROMPT, { maxTokens: 8, encoding });
  return auditAt(replayers, model, s, 0, 4, await fetchFrom(s, g.sessionIds[0]![0]!, 7n));
}

function expectCaughtAt(report: AuditReport, step: bigint, check: string): void {
  expect(report.verdict).toBe(check === "withheld" ? "withheld" : "fail");
  expect(report.culprit).toMatchObject({ step, status: "fail", failed: check });
  expect(report.steps.filter((x) => x.step < step).map((x) => x.status)).toEqual(Array.from({ length: Number(step) }, () => "pass"));
}

/** Changes the server's receipt store behind its back (what a server that tampers with its evidence does). */
function editStore(s: RunningServer, edit: (db: DatabaseSync) => void): void {
  const db = new DatabaseSync(s.store.path);
  try {
    edit(db);
  } finally {
    db.close();
  }
}

async function load(m: ModelDirectory, first: number, last: number): Promise<Shard> {
  const shard = await Shard.load(m, first, last);
  extraShards.push(shard);
  return shard;
}

describe("auditing cheating servers", () => {
  const faults: [string, () => Promise<Fault>][] = [
    ["adds noise of ±0.5", () => Promise.resolve({ kind: "noise", amplitude: 0.5 })],
    ["adds noise of ±0.01", () => Promise.resolve({ kind: "noise", amplitude: 0.01 })],
    ["skips its layers (returns the input)", () => Promise.resolve({ kind: "skip" })],
    ["computes 3 of its 4 layers", async () => ({ kind: "fewerLayers", lesser: await load(model, 0, 3) })],
    [
      "uses another variant's weights",
      async () => {
        const dir = join(scratch.dir, "verifier-other");
        writeRandomModel(dir, tinyConfig({ hidden_size: 64, intermediate_size: 96, max_position_embeddings: 256 }), { seed: 8, dtype: "F32", std: 0.15 });
        return { kind: "otherWeights", other: await load(ModelDirectory.open(dir), 0, 4) };
      },
    ],
    ["computes in lower precision (fp16 inside)", () => Promise.resolve({ kind: "lowerPrecision" })],
  ];
  for (const [what, makeFault] of faults) {
    it(`catches a server that ${what} at the first faulty step`, async () => {
      const fault = await makeFault();
      const report = await generateAndAudit(await serve((shard) => faultyShard(shard, fault, FAULT_FROM)));
      expectCaughtAt(report, FAULTY_STEP, "output");
      expect(report.culprit!.score).toBeGreaterThan(report.tolerance);
    });
  }

  describe("on an int4 variant (accuracy level 0, audited at the dense tolerance)", () => {
    let int4: { model: ModelDirectory; variantId: string } | undefined;
    /** The int4 compression of the model, made once. */
    async function int4Variant(): Promise<{ model: ModelDirectory; variantId: string }> {
      if (int4 === undefined) {
        const dir = join(scratch.dir, "verifier-faults-int4");
        const { variantId } = await compressModel(model.dir, dir, { method: "int4" });
        int4 = { model: ModelDirectory.open(dir), variantId };
      }
      return int4;
    }
    /** The same int4 weights under a manifest without accuracy_level: the legacy level-4 numerics (another variant). */
    async function level4Shard(): Promise<Shard> {
      const { model: m } = await int4Variant();
      const dir = join(scratch.dir, "verifier-faults-int4-level4");
      cpSync(m.dir, dir, { recursive: true });
      const legacy = { ...m.compression };
      delete legacy.accuracy_level;
      const copy = ModelDirectory.open(dir);
      writeManifest(dir, buildManifest(copy, legacy));
      copy.close();
      return load(ModelDirectory.open(dir), 0, 4);
    }
    const int4Faults: [string, () => Promise<Fault>][] = [
      ["adds noise of ±0.01", () => Promise.resolve({ kind: "noise", amplitude: 0.01 })],
      ["computes in lower precision (fp16 inside)", () => Promise.resolve({ kind: "lowerPrecision" })],
      ["computes 3 of its 4 layers", async () => ({ kind: "fewerLayers", lesser: await load((await int4Variant()).model, 0, 3) })],
      ["runs the faster accuracy level 4 kernels (another variant's numerics)", async () => ({ kind: "otherWeights", other: await level4Shard() })],
    ];
    for (const [what, makeFault] of int4Faults) {
      it(`catches a server that ${what} at the first faulty step`, async () => {
        const { model: m, variantId } = await int4Variant();
        const fault = await makeFault();
        const s = await serveLayers(m, 0, 4, scratch.dir, { variantId, wrap: (shard) => faultyShard(shard, fault, FAULT_FROM) });
        servers.push(s);
        const g = await generateOn(head, [s], PROMPT, { maxTokens: 8 });
        const report = await auditAt(replayers, m, s, 0, 4, await fetchFrom(s, g.sessionIds[0]![0]!, 7n), variantId);
        expect(report.tolerance).toBe(DEFAULT_TOLERANCE);
        expectCaughtAt(report, FAULTY_STEP, "output");
        expect(report.culprit!.score).toBeGreaterThan(report.tolerance);
      });
    }
  });

  it("refuses to audit with a replayer of another layer range or variant than the server's registration", async () => {
    const shard = await replayers.get(model, 0, 4);
    const server = { server: verifier.address, variantId: VARIANT, firstLayer: 0, lastLayer: 2 };
    const prefix = { sessionId: VARIANT, steps: [] };
    await expect(auditSession({ shard, variantId: VARIANT }, server, prefix)).rejects.toThrow(
      "the replayer holds layers 0:4, the audited server is registered for 0:2",
    );
    const other = "0x" + "cd".repeat(32);
    await expect(auditSession({ shard, variantId: other }, { ...server, lastLayer: 4 }, prefix)).rejects.toThrow(
      `the replayer holds variant ${other}, the audited server is registered for ${VARIANT}`,
    );
  });

  it("catches noise of ±0.5 on the int8 wire too", async () => {
    const report = await generateAndAudit(await serve((shard) => faultyShard(shard, { kind: "noise", amplitude: 0.5 }, FAULT_FROM)), "int8");
    expectCaughtAt(report, FAULTY_STEP, "output");
  });

  it("catches a stored output changed after signing (output hash), and an input (input hash)", async () => {
    const s = await serve();
    const g = await generateOn(head, [s], PROMPT, { maxTokens: 6 });
    const id = g.sessionIds[0]![0]!;
    editStore(s, (db) => {
      const row = db.prepare("SELECT output FROM steps WHERE session_id = ? AND step = '4'").get(id) as { output: Uint8Array };
      const changed = new Uint8Array(row.output);
      changed[7] = changed[7]! ^ 1;
      db.prepare("UPDATE steps SET output = ? WHERE session_id = ? AND step = '4'").run(changed, id);
    });
    const prefix = await fetchFrom(s, id, 5n);
    const report = await auditAt(replayers, model, s, 0, 4, prefix);
    expectCaughtAt(report, 4n, "outputHash");
    expect(report.steps[5]!.status).toBe("unchecked");

    const input = new Uint8Array(prefix.steps[2]!.input.payload);
    input[0] = input[0]! ^ 1;
    const tampered = { ...prefix, steps: prefix.steps.map((x, i) => (i === 2 ? { ...x, input: { ...x.input, payload: input } } : x)) };
    expectCaughtAt(await auditAt(replayers, model, s, 0, 4, tampered), 2n, "inputHash");
  });

  it("catches a receipt changed after it was stored (its hashes), another session's receipt, another server's steps", async () => {
    const s = await serve();
    const g = await generateOn(head, [s], PROMPT, { maxTokens: 4 });
    const prefix = await fetchFrom(s, g.sessionIds[0]![0]!, 3n);
    const withReceipt = (i: number, change: object): typeof prefix => ({
      ...prefix,
      steps: prefix.steps.map((x, j) => (j === i ? { ...x, receipt: { ...x.receipt, ...change } } : x)),
    });
    const report = await auditAt(replayers, model, s, 0, 4, withReceipt(1, { outputHash: prefix.steps[2]!.receipt.outputHash }));
    expectCaughtAt(report, 1n, "outputHash");
    expect(report.culprit!.reason).toBe(`stored output hashes to ${prefix.steps[1]!.receipt.outputHash}, receipt signs ${prefix.steps[2]!.receipt.outputHash}`);
    // a receipt from another session in the prefix
    expectCaughtAt(await auditAt(replayers, model, s, 0, 4, withReceipt(2, { sessionId: "0x" + "11".repeat(32) })), 2n, "session");
    // the server's steps audited as another server's: not its signature
    const other = await serve();
    expectCaughtAt(await auditAt(replayers, model, other, 0, 4, prefix), 0n, "server");
  });

  it("reports a server that cannot produce a committed step as withholding, after auditing the steps before it", async () => {
    const s = await serve();
    const g = await generateOn(head, [s], PROMPT, { maxTokens: 6 });
    const id = g.sessionIds[0]![0]!;
    editStore(s, (db) => db.prepare("DELETE FROM steps WHERE session_id = ? AND step = '3'").run(id));
    const prefix = await fetchFrom(s, id, 5n);
    expect(prefix.steps.length).toBe(3);
    expect(prefix.withheld).toEqual({ step: 3n, reason: expect.stringContaining(`SERVER_19: ${s.server.url}: no stored step has step 3 of session ${id}`) as string });
    const report = await auditAt(replayers, model, s, 0, 4, prefix);
    expectCaughtAt(report, 3n, "withheld");
  });
});
