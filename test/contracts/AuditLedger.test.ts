import { expect } from "chai";
import { network } from "hardhat";
import { ZeroHash, concat, keccak256, parseEther, toUtf8Bytes } from "ethers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/types";
import { MerkleTree } from "../../protocol/merkle.js";
import { receiptLeaf, type Receipt } from "../../protocol/receipt.js";
import { isSampled } from "../../node/verifier/sample.js";
import { PARAMS, VARIANT, fundAudits, joinAsVerifiers, passesOf, registerServer, sessionReceipts, worldFixture, type World } from "./fixtures.js";

const { ethers, networkHelpers } = await network.create();
const world = worldFixture(ethers);
const A = PARAMS.audits;
const EVERY_RECEIPT = { ...A, sampleRatePpb: 1_000_000_000n };
const RECEIPTS = 16;
const SALT = keccak256(toUtf8Bytes("salt"));

interface LedgerWorld extends World {
  verifiers: HardhatEthersSigner[];
  receipts: Receipt[];
  leaves: string[];
  tree: MerkleTree;
  batchId: bigint;
}

/** A server of layers [0, 4) with one batch of 16 receipts (its seed block mined), four verifiers, paid work and a funded pool. */
async function ledgerWorldFixture(): Promise<LedgerWorld> {
  const w = await world();
  const extra = (await ethers.getSigners()).slice(7, 10);
  const verifiers = [w.verifier, ...extra];
  await joinAsVerifiers(w, verifiers);
  await registerServer(w, w.server, 0, 4);
  const receipts = sessionReceipts(w.server.address, "ledger session", RECEIPTS);
  const leaves = receipts.map(receiptLeaf);
  const tree = new MerkleTree(leaves);
  await w.commitments.connect(w.server).postBatch(tree.root, VARIANT, 0, 4, RECEIPTS, 0, 0);
  await fundAudits(w, w.server.address, parseEther("10000"), parseEther("1000"));
  await w.auditLedger.setParams(EVERY_RECEIPT); // also mines the seed block
  return { ...w, verifiers, receipts, leaves, tree, batchId: 0n };
}

function record(w: LedgerWorld, who: HardhatEthersSigner, indices: number[]) {
  const { leaves, proofs } = passesOf(w.tree, w.leaves, indices);
  return w.auditLedger.connect(who).recordPasses(w.batchId, leaves, proofs);
}

/**
 * Opens a dispute of each receipt of `verdicts` by verifiers[3] (all inside the batch's window), has
 * each committee vote the receipt's verdict (true: at fault), settles them; returns their ids.
 */
async function disputesSettled(w: LedgerWorld, verdicts: [number, boolean][]): Promise<bigint[]> {
  const ids: bigint[] = [];
  for (const [i] of verdicts) {
    await w.disputes.connect(w.verifiers[3]!).openDispute(w.batchId, w.receipts[i]!, w.tree.proof(i));
    ids.push(await w.disputes.disputeCount());
  }
  await networkHelpers.mine(2);
  const committees: HardhatEthersSigner[][] = [];
  for (const id of ids) {
    await w.disputes.drawCommittee(id);
    committees.push((await w.disputes.committee(id)).map((a) => w.verifiers.find((v) => v.address === a)!));
  }
  const commitment = (id: bigint, m: HardhatEthersSigner, fault: boolean) => w.disputes.voteCommitment(id, m.address, fault, SALT);
  for (const [k, id] of ids.entries()) for (const m of committees[k]!) await w.disputes.connect(m).commitVote(id, await commitment(id, m, verdicts[k]![1]));
  await networkHelpers.time.increaseTo((await w.disputes.dispute(ids[ids.length - 1]!)).commitDeadline + 1n);
  for (const [k, id] of ids.entries()) for (const m of committees[k]!) await w.disputes.connect(m).revealVote(id, verdicts[k]![1], SALT);
  for (const id of ids) await w.disputes.settle(id);
  return ids;
}

describe("AuditLedger", function () {
  const load = () => networkHelpers.loadFixture(ledgerWorldFixture);

  describe("recordPasses", function () {
    it("records one verifier's passes of a batch, credits the server, rewards the verifier and keeps its stake slashable", async function () {
      const w = await load();
      const v = w.verifiers[0]!;
      const { leaves } = passesOf(w.tree, w.leaves, [3, 1, 2]);
      await expect(record(w, v, [3, 1, 2]))
        .to.emit(w.auditLedger, "PassesRecorded")
        .withArgs(w.batchId, v.address, w.server.address, leaves, 3n, 3n * A.rewardPerAudit)
        .and.to.emit(w.trust, "AuditsPassed");
      expect(await w.auditLedger.passRecord(w.batchId, v.address)).to.deep.equal([keccak256(concat(leaves)), 3n, 3n * A.rewardPerAudit]);
      expect(await w.auditLedger.creditedOf(w.batchId)).to.equal(3n);
      expect(await w.trust.record(w.server.address)).to.deep.equal([3n, 0n, parseEther("10000")]);
      expect(await w.rewards.owed(v.address)).to.equal(3n * A.rewardPerAudit);
      const batch = await w.commitments.batch(w.batchId);
      expect((await w.staking.operator(v.address)).slashableUntil).to.equal(batch.challengeDeadline + PARAMS.timing.maxDisputeDuration);
      await expect(record(w, v, [4]))
        .to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerAlreadyRecorded")
        .withArgs(w.batchId, v.address);
    });

    it("rejects a non-verifier, a closed record window, a bad count, unsorted or duplicate leaves, a leaf outside the batch and a disputed leaf", async function () {
      const w = await load();
      const v = w.verifiers[0]!;
      await expect(record(w, w.stranger, [0])).to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerNotVerifier").withArgs(w.stranger.address);
      await expect(w.auditLedger.connect(v).recordPasses(w.batchId, [], []))
        .to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerBadLeafCount")
        .withArgs(0n, 0n, 256n);
      await expect(w.auditLedger.connect(v).recordPasses(w.batchId, [w.leaves[0]!], []))
        .to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerBadLeafCount")
        .withArgs(1n, 0n, 256n);
      const many = Array.from({ length: 257 }, () => w.leaves[0]!);
      await expect(w.auditLedger.connect(v).recordPasses(w.batchId, many, many.map(() => [])))
        .to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerBadLeafCount")
        .withArgs(257n, 257n, 256n);
      const sorted = passesOf(w.tree, w.leaves, [0, 1]);
      await expect(w.auditLedger.connect(v).recordPasses(w.batchId, [...sorted.leaves].reverse(), [...sorted.proofs].reverse()))
        .to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerLeavesNotAscending")
        .withArgs(1n);
      await expect(w.auditLedger.connect(v).recordPasses(w.batchId, [w.leaves[0]!, w.leaves[0]!], [w.tree.proof(0), w.tree.proof(0)]))
        .to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerLeavesNotAscending")
        .withArgs(1n);
      await expect(w.auditLedger.connect(v).recordPasses(w.batchId, [ZeroHash], [w.tree.proof(0)]))
        .to.be.revertedWithCustomError(w.auditLedger, "ReceiptNotInBatch")
        .withArgs(w.batchId, ZeroHash);
      await w.disputes.connect(w.verifiers[3]!).openDispute(w.batchId, w.receipts[5]!, w.tree.proof(5));
      await expect(record(w, v, [5])).to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerLeafDisputed").withArgs(w.leaves[5], 1n);
      // passes are taken in the first half of the window only: the second half is left for disputes
      const batch = await w.commitments.batch(w.batchId);
      const recordDeadline = batch.postedAt + (batch.challengeDeadline - batch.postedAt) / 2n;
      await networkHelpers.time.setNextBlockTimestamp(recordDeadline + 1n);
      await expect(record(w, v, [0]))
        .to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerRecordClosed")
        .withArgs(w.batchId, recordDeadline, recordDeadline + 1n);
    });

    it("samples exactly as node/verifier/sample.ts, from the block after the batch, kept once anchored", async function () {
      const w = await load();
      await w.auditLedger.setParams({ ...A, sampleRatePpb: 500_000_000n });
      const batch = await w.commitments.batch(w.batchId);
      const seed = (await ethers.provider.getBlock(Number(batch.postedBlock) + 1))!.hash!;
      for (const leaf of w.leaves) expect(await w.auditLedger.isSampled(w.batchId, leaf), leaf).to.equal(isSampled(seed, leaf, 0.5));
      const sampled = w.leaves.flatMap((leaf, i) => (isSampled(seed, leaf, 0.5) ? [i] : []));
      const unsampled = w.leaves.findIndex((leaf) => !isSampled(seed, leaf, 0.5));
      if (unsampled >= 0) {
        await expect(record(w, w.verifiers[0]!, [unsampled]))
          .to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerNotSampled")
          .withArgs(w.batchId, w.leaves[unsampled]);
      }
      if (sampled.length > 0) await expect(record(w, w.verifiers[1]!, sampled)).to.emit(w.auditLedger, "PassesRecorded");
      // an anchored seed outlives blockhash's 256 blocks
      await networkHelpers.mine(300);
      for (const leaf of w.leaves) expect(await w.auditLedger.isSampled(w.batchId, leaf)).to.equal(isSampled(seed, leaf, 0.5));
    });

    it("needs the seed block: not before it exists, not after blockhash forgot it unless anchored", async function () {
      const w = await load();
      const { tree } = w;
      const root = keccak256(toUtf8Bytes("second batch"));
      await w.commitments.connect(w.server).postBatch(root, VARIANT, 0, 4, 1, 1, 1);
      const seedBlock = (await w.commitments.batch(1n)).postedBlock + 1n;
      // this transaction is mined in the seed block itself: its hash is not known inside it
      await expect(w.auditLedger.anchorSeed(1n)).to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerSeedUnavailable").withArgs(1n, seedBlock);
      await expect(w.auditLedger.isSampled(1n, root)).to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerSeedUnavailable").withArgs(1n, seedBlock);
      await networkHelpers.mine(1);
      const hash = (await ethers.provider.getBlock(Number(seedBlock)))!.hash;
      await expect(w.auditLedger.anchorSeed(1n)).to.emit(w.auditLedger, "SeedAnchored").withArgs(1n, hash);
      await expect(w.auditLedger.anchorSeed(1n)).to.not.emit(w.auditLedger, "SeedAnchored");
      // batch 0's seed was never anchored: 300 blocks later it is gone
      await networkHelpers.mine(300);
      const seed0 = (await w.commitments.batch(0n)).postedBlock + 1n;
      await expect(w.auditLedger.isSampled(0n, w.leaves[0]!)).to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerSeedUnavailable").withArgs(0n, seed0);
      await expect(w.auditLedger.connect(w.verifiers[0]!).recordPasses(0n, [w.leaves[0]!], [tree.proof(0)]))
        .to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerSeedUnavailable")
        .withArgs(0n, seed0);
    });

    it("pays rewards only from what the pool has unallocated", async function () {
      const w = await load();
      const pool = await w.rewards.getAddress();
      // the budget (all of the paid 10,000) would allow 1,200; the pool holds 1,000
      await w.auditLedger.setParams({ ...EVERY_RECEIPT, rewardPerAudit: parseEther("600"), rewardBudgetBps: 10_000n });
      await expect(record(w, w.verifiers[0]!, [0, 1]))
        .to.emit(w.auditLedger, "PassesRecorded")
        .withArgs(w.batchId, w.verifiers[0]!.address, w.server.address, passesOf(w.tree, w.leaves, [0, 1]).leaves, 2n, parseEther("1000"));
      expect(await w.token.balanceOf(pool)).to.equal(parseEther("1000"));
      expect(await w.rewards.unallocated()).to.equal(0n);
      expect(await w.auditLedger.rewardBudgetLeft(w.server.address)).to.equal(parseEther("9000"));
    });
  });

  describe("slashFalsePass", function () {
    it("slashes each false pass once, what is free of the verifier's stake, and refuses what is not shown false", async function () {
      const w = await load();
      const lazy = w.verifiers[0]!;
      const passes = passesOf(w.tree, w.leaves, [0, 1, 2]);
      const at = (i: number) => passes.leaves.indexOf(w.leaves[i]!);
      await expect(w.auditLedger.slashFalsePass(w.batchId, lazy.address, passes.leaves, 0))
        .to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerNoRecord")
        .withArgs(w.batchId, lazy.address);
      await record(w, lazy, [0, 1, 2]);
      await expect(w.auditLedger.slashFalsePass(w.batchId, lazy.address, passes.leaves.slice(0, 2), 0))
        .to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerLeavesMismatch")
        .withArgs(w.batchId, lazy.address);
      await expect(w.auditLedger.slashFalsePass(w.batchId, lazy.address, passes.leaves, 3))
        .to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerBadIndex")
        .withArgs(3n, 3n);
      const [won, lost1, lost2] = await disputesSettled(w, [[0, false], [1, true], [2, true]]);
      // a dispute the server won shows nothing false
      await expect(w.auditLedger.slashFalsePass(w.batchId, lazy.address, passes.leaves, at(0)))
        .to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerPassNotFalse")
        .withArgs(w.leaves[0], won);
      // two passes shown false: the second penalty takes what the first left
      await w.auditLedger.setParams({ ...EVERY_RECEIPT, falsePassPenalty: parseEther("400"), exposerShareBps: 0n });
      const free = async () => {
        const op = await w.staking.operator(lazy.address);
        return op.bonded + op.unbonding - op.locked;
      };
      const before = await free();
      await expect(w.auditLedger.slashFalsePass(w.batchId, lazy.address, passes.leaves, at(1)))
        .to.emit(w.auditLedger, "FalsePassSlashed")
        .withArgs(w.batchId, lazy.address, w.leaves[1], lost1, parseEther("400"), 0n);
      const left = before - parseEther("400");
      await expect(w.auditLedger.slashFalsePass(w.batchId, lazy.address, passes.leaves, at(2)))
        .to.emit(w.auditLedger, "FalsePassSlashed")
        .withArgs(w.batchId, lazy.address, w.leaves[2], lost2, left, 0n);
      expect(await free()).to.equal(0n);
      expect(await w.auditLedger.falsePassSlashed(lazy.address, w.leaves[2]!)).to.equal(true);
      expect(await w.staking.isActiveVerifier(lazy.address)).to.equal(false);
      expect(await w.token.balanceOf(await w.auditLedger.getAddress())).to.equal(0n);
    });

    it("with a zero penalty, marks the false pass slashed and moves nothing", async function () {
      const w = await load();
      const lazy = w.verifiers[0]!;
      await record(w, lazy, [0]);
      await w.auditLedger.setParams({ ...EVERY_RECEIPT, falsePassPenalty: 0n });
      const [id] = await disputesSettled(w, [[0, true]]);
      await expect(w.auditLedger.slashFalsePass(w.batchId, lazy.address, [w.leaves[0]!], 0))
        .to.emit(w.auditLedger, "FalsePassSlashed")
        .withArgs(w.batchId, lazy.address, w.leaves[0], id, 0n, 0n);
      expect(await w.auditLedger.falsePassSlashed(lazy.address, w.leaves[0]!)).to.equal(true);
      expect((await w.staking.operator(lazy.address)).bonded).to.equal(PARAMS.stake.verifierMinStake);
    });
  });

  describe("governance", function () {
    it("accepts consistent parameters only, from governance only", async function () {
      const w = await load();
      const args = (p: typeof A) => [[p.sampleRatePpb, p.rewardBudgetBps, p.exposerShareBps, p.rewardPerAudit, p.falsePassPenalty]];
      for (const bad of [
        { ...A, sampleRatePpb: 0n },
        { ...A, sampleRatePpb: 1_000_000_001n },
        { ...A, rewardBudgetBps: 10_001n },
        { ...A, exposerShareBps: 10_001n },
      ]) {
        await expect(w.auditLedger.setParams(bad)).to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerBadParams").withArgs(...args(bad));
      }
      await expect(w.auditLedger.setParams(A)).to.emit(w.auditLedger, "ParamsSet").withArgs(...args(A));
      expect(await w.auditLedger.params()).to.deep.equal(args(A)[0]);
      await expect(w.auditLedger.connect(w.stranger).setParams(A))
        .to.be.revertedWithCustomError(w.auditLedger, "AccessControlUnauthorizedAccount")
        .withArgs(w.stranger.address, await w.auditLedger.GOVERNANCE_ROLE());
    });
  });
});
