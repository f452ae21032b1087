import { Wallet } from "ethers";
import { beforeAll, describe, expect, it } from "vitest";
import { Committer } from "../../../node/chain/committer.js";
import { ChainPostedBatches } from "../../../node/verifier/commitmentCheck.js";
import { toleranceFor } from "../../../node/verifier/compareOutput.js";
import type { StepSource } from "../../../node/verifier/fetchPrefix.js";
import { auditReceipts } from "../../../node/verifier/receiptAudit.js";
import { VerifierConnection, type ListedReceipt } from "../../../node/verifier/serverConnection.js";
import { receiptLeaf } from "../../../protocol/receipt.js";
import type { StoredStep } from "../../../protocol/wire.js";
import { DEV_KEYS, PROMPT, silent, useVerifierChain, type StakedServer, type VerifierChain } from "./chainHarness.js";
import { generateOn } from "./harness.js";

/**
 * docs/threat-model.md, row 23: an audit rests only on steps the server committed. A receipt's
 * verdict depends on every earlier step of its session (the replay runs them all), so each earlier
 * step the server hands over must be under a batch root it posted: a step it never committed (made up
 * to hide an earlier faulty one, or put in by someone between it and the verifier) fails the audit.
 */
const env = useVerifierChain("binding-model");
let net: VerifierChain;
let server: StakedServer;
let other: StakedServer;
let batches: number[];
let sessionId: string;
let last: ListedReceipt;
let connection: VerifierConnection;

/** Serves one 8-step generation on `s` and commits its receipts 3 to a batch; returns the batch ids. */
async function serveInSmallBatches(s: StakedServer): Promise<number[]> {
  await generateOn(net.head, [s.running], PROMPT, { maxTokens: 8 });
  const committer = new Committer({ commitments: net.contractsFor(s.signer).commitments, store: s.running.store, maxReceiptsPerBatch: 3, logger: silent });
  const ids: number[] = [];
  for (let id = await committer.commitOnce(); id !== undefined; id = await committer.commitOnce()) ids.push(id);
  return ids;
}

beforeAll(async () => {
  net = env.net;
  server = await net.stakedServer();
  other = await net.stakedServer();
  batches = await serveInSmallBatches(server);
  await serveInSmallBatches(other);
  await net.daemonFor(0, 1); // registers dev account #1 as a verifier
  const verifier = new Wallet(DEV_KEYS[0]!);
  connection = await VerifierConnection.open(server.running.server.url, verifier.signingKey, verifier.address);
  last = (await connection.listBatch(BigInt(batches.at(-1)!))).at(-1)!;
  sessionId = last.receipt.sessionId;
  return () => connection.close();
}, 120_000);

/** The server's connection, with step 1 of the session replaced by `edit` of it. */
function editingStep1(edit: (s: StoredStep) => StoredStep): StepSource {
  return {
    fetchSessionStep: async (session, step) => {
      const stored = await connection.fetchSessionStep(session, step);
      return step === 1n ? edit(stored) : stored;
    },
  };
}

async function auditLast(source: StepSource) {
  const registered = { server: server.running.wallet.address, variantId: net.variantId, firstLayer: 0, lastLayer: net.model.config.numLayers };
  const batchesOnChain = new ChainPostedBatches(net.contractsFor(net.admin).commitments);
  const [audit] = await auditReceipts(source, net.replayers, registered, [last], { tolerance: toleranceFor(net.model.compression), batches: batchesOnChain });
  return audit!;
}

describe("an audit binds every earlier step to the server's commitments", () => {
  it("passes the last step of a session committed across three batches, the earlier steps proven into the earlier batches", async () => {
    expect(batches).toHaveLength(3);
    expect(last.receipt.step).toBe(7n);
    const step1 = await connection.fetchSessionStep(sessionId, 1n);
    expect(step1.batch?.batchId).toBe(BigInt(batches[0]!));
    expect(await auditLast(connection)).toEqual({
      leaf: receiptLeaf(last.receipt),
      verdict: "pass",
      reason: expect.stringMatching(/^step 7 of session 0x[0-9a-f]{64} matches the replay \(score /) as string,
    });
  });

  it("fails it when an earlier step comes without a batch proof (a step the server never committed)", async () => {
    const stored = await connection.fetchSessionStep(sessionId, 1n);
    const audit = await auditLast(
      editingStep1((s) => {
        const unproven = { ...s };
        delete unproven.batch;
        return unproven;
      }),
    );
    expect(audit).toEqual({
      leaf: receiptLeaf(last.receipt),
      verdict: "fail",
      reason: `step 1 of session ${sessionId}: commitment: receipt ${receiptLeaf(stored.receipt)} comes with no batch proof: the server has not committed it`,
    });
  });

  it("fails it when an earlier step's proof names a batch never posted, another server's batch, or does not lead to the root", async () => {
    const stored = await connection.fetchSessionStep(sessionId, 1n);
    const leaf = receiptLeaf(stored.receipt);
    const otherBatch = BigInt(batches.at(-1)! + 1); // the other server committed right after
    const step2 = await connection.fetchSessionStep(sessionId, 2n);
    const cases: [NonNullable<StoredStep["batch"]>, string][] = [
      [{ batchId: 999n, proof: stored.batch!.proof }, `receipt ${leaf} is said to be in batch 999, which was never posted`],
      [{ batchId: otherBatch, proof: stored.batch!.proof }, `receipt ${leaf} is said to be in batch ${otherBatch}, which ${other.running.wallet.address} posted, not ${server.running.wallet.address}`],
      [{ batchId: stored.batch!.batchId, proof: step2.batch!.proof }, `receipt ${leaf}'s proof does not lead to the root of batch ${stored.batch!.batchId}`],
    ];
    for (const [batch, why] of cases) {
      const audit = await auditLast(editingStep1((s) => ({ ...s, batch })));
      expect(audit).toEqual({ leaf: receiptLeaf(last.receipt), verdict: "fail", reason: `step 1 of session ${sessionId}: commitment: ${why}` });
    }
  });
});
