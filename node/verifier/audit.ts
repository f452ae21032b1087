import { getAddress } from "ethers";
import type { Shard } from "../../engine/runtime/shard.js";
import { activationHash, decodeActivations, type EncodedActivations } from "../../protocol/activations.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import type { Receipt } from "../../protocol/receipt.js";
import { DEFAULT_TOLERANCE, compareOutput } from "./compareOutput.js";

/** What the verifier knows of the audited server, from the chain (its registration), not from the server. */
export interface AuditedServer {
  /** Staked address that posts the server's batches (its receipts name it). */
  server: string;
  /** Manifest hash of the registered variant. */
  variantId: string;
  firstLayer: number;
  lastLayer: number;
}

/** The registered weights of a layer range, loaded by the verifier (a Shard of the variant's model directory). */
export interface Replayer {
  shard: Shard;
  /** Manifest hash of the weights `shard` was loaded from. */
  variantId: string;
}

/** One step as the server stored it (a wire StoredStep or an ActivationStore row). */
export interface StepEvidence {
  receipt: Receipt;
  input: EncodedActivations;
  output: EncodedActivations;
  /** Where the receipt is committed on chain, as the server says (a wire StoredStep's batch and Merkle proof). */
  batch?: { batchId: bigint; proof: readonly string[] };
}

/** Steps 0..n of one session at one server, as fetched; `withheld` is the first step the server did not produce. */
export interface SessionPrefix {
  sessionId: string;
  steps: readonly StepEvidence[];
  withheld?: { step: bigint; reason: string };
}

/** Which check a step failed. */
export type AuditCheck =
  | "session" // the receipt names another session
  | "step" // not the next step of the session
  | "server" // the receipt names another server
  | "layers" // another layer range than registered
  | "variant" // another model variant than registered
  | "commitment" // the receipt is in no batch the server posted (commitmentCheck.ts)
  | "shape" // activations of the wrong width, or output rows ≠ input rows, or past the shard's context
  | "tokens" // tokens ≠ input rows
  | "inputHash" // the stored input is not what the receipt signs
  | "outputHash" // the stored output is not what the receipt signs
  | "output" // the output differs from the recomputation beyond the tolerance
  | "withheld"; // the server did not produce the step

export interface StepAudit {
  step: bigint;
  /** Position of the step's first token in the session (the rows of all earlier steps). */
  position: number;
  rows: number;
  /** pass; fail (see `failed`); unchecked: after an earlier step failed a check the replay depends on. */
  status: "pass" | "fail" | "unchecked";
  failed?: AuditCheck;
  reason?: string;
  /** From the replay (absent when the step was not replayed): see compareOutput. */
  maxAbsDiff?: number;
  score?: number;
  exact?: boolean;
}

export interface AuditReport {
  sessionId: string;
  /** fail: some step is wrong; withheld: every produced step is right but the server withheld one; pass otherwise. */
  verdict: "pass" | "fail" | "withheld";
  steps: StepAudit[];
  /** The first failed (or withheld) step. */
  culprit?: StepAudit;
  tolerance: number;
  /** Rows replayed in the one prefill pass. */
  replayedRows: number;
}

export interface AuditOptions {
  /** Largest step score that passes (default DEFAULT_TOLERANCE; see compareOutput.ts). */
  tolerance?: number;
  /**
   * Steps whose receipts the server did not commit on chain, with the reason (commitmentCheck.ts);
   * they fail the "commitment" check. Absent: the receipts are taken as committed.
   */
  uncommitted?: ReadonlyMap<bigint, string>;
}

/**
 * Audits the prefix of a session that one server computed.
 *
 * First the evidence: every receipt must name the server and this session, consecutive steps from
 * 0, its registered layers and variant, be committed by the server (`uncommitted` names those that
 * are not), claim tokens = input rows, and hash to the stored activations. Then the arithmetic: the inputs of all steps, concatenated, run through the
 * registered weights in ONE prefill pass from an empty cache (a decode step depends on every earlier
 * step of its session through the KV cache, and one pass over n rows costs far less than n decode
 * steps: this is what makes auditing cheaper than serving), and each step's rows of that output are
 * compared with its stored output (compareOutput: the wire encoding's rounding plus a tolerance).
 *
 * The replay covers the steps before the first one whose evidence fails (a later step's recomputation
 * would rest on unverified inputs); those after it are "unchecked". The verifier's own setup is not
 * the server's fault: a replayer of another layer range or variant throws instead of accusing.
 */
export async function auditSession(replayer: Replayer, server: AuditedServer, prefix: SessionPrefix, options: AuditOptions = {}): Promise<AuditReport> {
  const tolerance = options.tolerance ?? DEFAULT_TOLERANCE;
  if (!(tolerance >= 0)) throw new InvalidArgumentError(`tolerance must be a number >= 0, got ${tolerance}`);
  const { shard } = replayer;
  if (shard.first !== server.firstLayer || shard.last !== server.lastLayer) {
    throw new InvalidArgumentError(`the replayer holds layers ${shard.first}:${shard.last}, the audited server is registered for ${server.firstLayer}:${server.lastLayer}`);
  }
  if (replayer.variantId.toLowerCase() !== server.variantId.toLowerCase()) {
    throw new InvalidArgumentError(`the replayer holds variant ${replayer.variantId}, the audited server is registered for ${server.variantId}`);
  }
  const expected = { ...server, server: getAddress(server.server) };
  const steps: StepAudit[] = [];
  let position = 0;
  let broken = false;
  for (const [i, evidence] of prefix.steps.entries()) {
    const rows = evidence.input.rows;
    const audit: StepAudit = { step: BigInt(i), position, rows, status: "unchecked" };
    if (!broken) {
      const problem = checkEvidence(evidence, prefix.sessionId, BigInt(i), position, expected, shard, options.uncommitted?.get(BigInt(i)));
      if (problem !== undefined) {
        Object.assign(audit, { status: "fail", failed: problem.check, reason: problem.reason });
        broken = true;
      }
    }
    steps.push(audit);
    position += rows;
  }
  const replayable = broken ? steps.findIndex((s) => s.status === "fail") : steps.length;
  const replayedRows = await replay(shard, prefix.steps.slice(0, replayable), steps, tolerance);
  if (!broken && prefix.withheld !== undefined) {
    steps.push({ step: prefix.withheld.step, position, rows: 0, status: "fail", failed: "withheld", reason: prefix.withheld.reason });
  }
  const culprit = steps.find((s) => s.status === "fail");
  const verdict = culprit === undefined ? "pass" : culprit.failed === "withheld" ? "withheld" : "fail";
  return { sessionId: prefix.sessionId, verdict, steps, ...(culprit === undefined ? {} : { culprit }), tolerance, replayedRows };
}

function checkEvidence(
  e: StepEvidence,
  sessionId: string,
  step: bigint,
  position: number,
  server: AuditedServer,
  shard: Shard,
  uncommitted: string | undefined,
): { check: AuditCheck; reason: string } | undefined {
  const r = e.receipt;
  const H = shard.config.hiddenSize;
  if (r.sessionId.toLowerCase() !== sessionId.toLowerCase()) return { check: "session", reason: `receipt names session ${r.sessionId}, audited ${sessionId}` };
  if (r.step !== step) return { check: "step", reason: `receipt names step ${r.step}, expected step ${step} of the session` };
  if (getAddress(r.server) !== server.server) return { check: "server", reason: `receipt names server ${r.server}, audited ${server.server}` };
  if (r.firstLayer !== server.firstLayer || r.lastLayer !== server.lastLayer) {
    return { check: "layers", reason: `receipt covers layers ${r.firstLayer}:${r.lastLayer}, registered ${server.firstLayer}:${server.lastLayer}` };
  }
  if (r.variantId.toLowerCase() !== server.variantId.toLowerCase()) return { check: "variant", reason: `receipt names variant ${r.variantId}, registered ${server.variantId}` };
  if (uncommitted !== undefined) return { check: "commitment", reason: uncommitted };
  if (e.input.cols !== H || e.output.cols !== H || e.output.rows !== e.input.rows) {
    return { check: "shape", reason: `input ${e.input.rows}×${e.input.cols} and output ${e.output.rows}×${e.output.cols}, expected equal shapes of width ${H}` };
  }
  if (position + e.input.rows > shard.maxLength) {
    return { check: "shape", reason: `step reaches position ${position + e.input.rows}, past the model's context of ${shard.maxLength}` };
  }
  if (r.tokens !== e.input.rows) return { check: "tokens", reason: `receipt claims ${r.tokens} tokens for ${e.input.rows} input rows` };
  if (activationHash(e.input) !== r.inputHash) return { check: "inputHash", reason: `stored input hashes to ${activationHash(e.input)}, receipt signs ${r.inputHash}` };
  if (activationHash(e.output) !== r.outputHash) return { check: "outputHash", reason: `stored output hashes to ${activationHash(e.output)}, receipt signs ${r.outputHash}` };
  return undefined;
}

/** One prefill pass over the steps' inputs from an empty cache; compares each step's rows. Returns the rows replayed. */
async function replay(shard: Shard, evidence: readonly StepEvidence[], steps: StepAudit[], tolerance: number): Promise<number> {
  if (evidence.length === 0) return 0;
  const H = shard.config.hiddenSize;
  const rows = evidence.reduce((n, e) => n + e.input.rows, 0);
  const inputs = new Float32Array(rows * H); // (rows, hidden): every step's input, in order
  let at = 0;
  for (const e of evidence) {
    inputs.set(decodeActivations(e.input), at);
    at += e.input.rows * H;
  }
  const outputs = await shard.compute(inputs, shard.newCache());
  for (const [i, e] of evidence.entries()) {
    const audit = steps[i]!;
    const mine = outputs.subarray(audit.position * H, (audit.position + e.input.rows) * H);
    const { maxAbsDiff, score, exact } = compareOutput(e.output, mine);
    const pass = score <= tolerance;
    Object.assign(audit, { status: pass ? "pass" : "fail", maxAbsDiff, score, exact });
    if (!pass) Object.assign(audit, { failed: "output", reason: `output differs from the recomputation by ${score.toExponential(2)} of its scale (tolerance ${tolerance})` });
  }
  return rows;
}
