import type { ModelDirectory } from "../../engine/model/modelDir.js";
import { Shard } from "../../engine/runtime/shard.js";
import { receiptLeaf } from "../../protocol/receipt.js";
import { auditSession, type AuditReport, type AuditedServer, type StepEvidence } from "./audit.js";
import type { ReceiptVerdict } from "./auditState.js";
import { commitmentProblem, type PostedBatches } from "./commitmentCheck.js";
import { DEFAULT_FETCH_LIMITS, fetchSessionPrefix, type FetchLimits, type StepSource } from "./fetchPrefix.js";
import type { ListedReceipt } from "./serverConnection.js";

/** The verifier's replay shards of one model variant, one per layer range, each loaded once. */
export class ReplayShards {
  private readonly shards = new Map<string, Promise<Shard>>();

  constructor(
    private readonly model: ModelDirectory,
    readonly variantId: string,
    private readonly threads: number,
  ) {}

  get(firstLayer: number, lastLayer: number): Promise<Shard> {
    const key = `${firstLayer}:${lastLayer}`;
    let shard = this.shards.get(key);
    if (shard === undefined) {
      shard = Shard.load(this.model, firstLayer, lastLayer, { threads: this.threads });
      this.shards.set(key, shard);
      shard.catch(() => this.shards.delete(key)); // a failed load is not kept
    }
    return shard;
  }

  async release(): Promise<void> {
    const loaded = [...this.shards.values()];
    this.shards.clear();
    for (const s of await Promise.allSettled(loaded)) if (s.status === "fulfilled") await s.value.release();
  }
}

/** One receipt's verdict, with the reason a failed one failed. */
export interface ReceiptAudit {
  leaf: string;
  verdict: ReceiptVerdict;
  reason: string;
}

/**
 * Audits receipts of one server: per session, the prefix up to the latest receipt asked for is
 * fetched and replayed once (auditSession), and each receipt takes the verdict of its own prefix: a
 * receipt fails when any step up to it fails (its output rests on every earlier step through the KV
 * cache), is withheld when the server withheld a step up to it, and passes otherwise. The step the
 * server stores must be the very receipt audited (another receipt for the same step fails it), and
 * every earlier step must be one the server committed on chain (commitmentCheck.ts): the receipts
 * audited and `options.committed` count as committed, any other step needs a Merkle proof into a
 * batch of `options.batches` that the server posted.
 */
export async function auditReceipts(
  source: StepSource,
  replayers: ReplayShards,
  server: AuditedServer,
  receipts: readonly ListedReceipt[],
  options: { tolerance: number; batches: PostedBatches; committed?: Iterable<string>; limits?: FetchLimits },
): Promise<ReceiptAudit[]> {
  const committed = new Set([...(options.committed ?? []), ...receipts.map((r) => receiptLeaf(r.receipt))]);
  const bySession = new Map<string, ListedReceipt[]>();
  for (const r of receipts) {
    const id = r.receipt.sessionId.toLowerCase();
    bySession.set(id, [...(bySession.get(id) ?? []), r]);
  }
  const shard = await replayers.get(server.firstLayer, server.lastLayer);
  const results: ReceiptAudit[] = [];
  for (const [sessionId, asked] of bySession) {
    const lastStep = asked.reduce((m, r) => (r.receipt.step > m ? r.receipt.step : m), 0n);
    const prefix = await fetchSessionPrefix(source, sessionId, lastStep, options.limits ?? DEFAULT_FETCH_LIMITS);
    const storedLeaves = prefix.steps.map((s) => receiptLeaf(s.receipt));
    const uncommitted = await uncommittedSteps(prefix.steps, storedLeaves, server.server, committed, options.batches);
    const report = await auditSession({ shard, variantId: replayers.variantId }, server, prefix, { tolerance: options.tolerance, uncommitted });
    for (const r of asked) results.push(verdictOf(r, report, storedLeaves));
  }
  return results;
}

/** The first step of the prefix whose receipt the server did not commit, with why (later steps go unchecked anyway). */
async function uncommittedSteps(
  steps: readonly StepEvidence[],
  leaves: readonly string[],
  server: string,
  committed: ReadonlySet<string>,
  batches: PostedBatches,
): Promise<Map<bigint, string>> {
  for (const [i, step] of steps.entries()) {
    const problem = await commitmentProblem(step, leaves[i]!, server, committed, batches);
    if (problem !== undefined) return new Map([[BigInt(i), problem]]);
  }
  return new Map();
}

function verdictOf(r: ListedReceipt, report: AuditReport, storedLeaves: readonly string[]): ReceiptAudit {
  const leaf = receiptLeaf(r.receipt);
  const step = r.receipt.step;
  const culprit = report.culprit;
  if (culprit !== undefined && culprit.step <= step) {
    const verdict = culprit.failed === "withheld" ? "withheld" : "fail";
    return { leaf, verdict, reason: `step ${culprit.step} of session ${report.sessionId}: ${culprit.failed}: ${culprit.reason}` };
  }
  const stored = storedLeaves[Number(step)];
  if (stored !== undefined && stored !== leaf) {
    return { leaf, verdict: "fail", reason: `the server stores receipt ${stored} for step ${step} of session ${report.sessionId}, not the committed ${leaf}` };
  }
  const audit = report.steps[Number(step)];
  return { leaf, verdict: "pass", reason: `step ${step} of session ${report.sessionId} matches the replay (score ${audit?.score?.toExponential(2) ?? "n/a"})` };
}
