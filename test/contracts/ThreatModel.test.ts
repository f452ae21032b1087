import { expect } from "chai";
import { network } from "hardhat";
import { keccak256, parseEther, toUtf8Bytes } from "ethers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/types";
import { MerkleTree } from "../../protocol/merkle.js";
import { receiptLeaf, type Receipt } from "../../protocol/receipt.js";
import { PARAMS, VARIANT, fundAudits, joinAsVerifiers, passesOf, registerServer, sessionReceipts, worldFixture, type World } from "./fixtures.js";

// Attacks of docs/threat-model.md that Disputes answers and Disputes.test.ts does not already show.

const { ethers, networkHelpers } = await network.create();
const world = worldFixture(ethers);
const D = PARAMS.disputes;
const A = PARAMS.audits;
const EVERY_RECEIPT = { ...A, sampleRatePpb: 1_000_000_000n };
const Outcome = { ServerAtFault: 1n, ServerCorrect: 2n, NoQuorum: 3n };
const Status = { Open: 1n, Voting: 2n };
const salt = (who: string) => keccak256(toUtf8Bytes(`salt of ${who}`));

interface ThreatWorld extends World {
  verifiers: HardhatEthersSigner[];
  /** Receipts 0..4 of one session of the server. */
  receipts: Receipt[];
}

/** Commits the receipts `indices` of `receipts` in a new batch, mines its seed block; returns its id, tree, leaves and a dispute opener. */
async function commitBatch(w: ThreatWorld, indices: number[], fromTime: number) {
  const leaves = indices.map((i) => receiptLeaf(w.receipts[i]!));
  const tree = new MerkleTree(leaves);
  await w.commitments.connect(w.server).postBatch(tree.root, VARIANT, 0, 4, indices.length, fromTime, fromTime);
  const batchId = (await w.commitments.batchCount()) - 1n;
  await networkHelpers.mine(1); // the block whose hash seeds the batch's sample
  const open = (challenger: HardhatEthersSigner, i: number) => {
    const at = indices.indexOf(i);
    return w.disputes.connect(challenger).openDispute(batchId, w.receipts[i]!, tree.proof(at));
  };
  return { batchId, tree, leaves, open };
}

/** Batch `batchId` commits the receipts `indices` of `receipts`; returns a dispute opener for it. */
async function postBatch(w: ThreatWorld, indices: number[], fromTime: number) {
  return (await commitBatch(w, indices, fromTime)).open;
}

/** A server of layers [0, 4) with five receipts, five registered verifiers with their bond approved. */
async function threatWorld(): Promise<ThreatWorld> {
  const w = await world();
  const extra = (await ethers.getSigners()).slice(7, 11);
  const verifiers = [w.verifier, ...extra];
  await joinAsVerifiers(w, verifiers);
  await registerServer(w, w.server, 0, 4);
  return { ...w, verifiers, receipts: sessionReceipts(w.server.address, "threat session", 5) };
}

function memberSigner(w: ThreatWorld, address: string): HardhatEthersSigner {
  const found = w.verifiers.find((v) => v.address === address);
  if (found === undefined) throw new Error(`committee member ${address} is not one of the test's verifiers`);
  return found;
}

async function drawn(w: ThreatWorld, id: bigint): Promise<HardhatEthersSigner[]> {
  await networkHelpers.mine(2);
  await w.disputes.drawCommittee(id);
  return (await w.disputes.committee(id)).map((a) => memberSigner(w, a));
}

async function commit(w: ThreatWorld, id: bigint, member: HardhatEthersSigner, fault: boolean): Promise<void> {
  await w.disputes.connect(member).commitVote(id, await w.disputes.voteCommitment(id, member.address, fault, salt(member.address)));
}

async function toRevealPhase(w: ThreatWorld, id: bigint): Promise<void> {
  await networkHelpers.time.increaseTo((await w.disputes.dispute(id)).commitDeadline + 1n);
}

describe("Threat model (docs/threat-model.md)", function () {
  const load = () => networkHelpers.loadFixture(threatWorld);

  it("double slashing: a receipt slashed once cannot be disputed again, neither in its batch nor re-committed in a later one", async function () {
    const w = await load();
    const openInFirst = await postBatch(w, [0, 1, 2, 3], 0);
    const openInSecond = await postBatch(w, [0, 4], 1);
    const [challenger, other] = [w.verifiers[0]!, w.verifiers[1]!];
    const leaf = receiptLeaf(w.receipts[0]!);
    const bonded = (await w.staking.operator(w.server.address)).bonded;
    // short phases, so the dispute settles while both batches can still be challenged
    await w.disputes.setParams({ ...D, commitPeriod: 60n, revealPeriod: 60n });

    await openInFirst(challenger, 0);
    const members = await drawn(w, 1n);
    for (const m of members) await commit(w, 1n, m, true);
    await toRevealPhase(w, 1n);
    for (const m of members) await w.disputes.connect(m).revealVote(1n, true, salt(m.address));
    await expect(w.disputes.settle(1n)).to.emit(w.disputes, "DisputeSettled").withArgs(1n, Outcome.ServerAtFault, D.serverSlash, (D.serverSlash * D.challengerShareBps) / 10_000n, members.length, 0);

    expect(BigInt(await networkHelpers.time.latest())).to.be.lessThan((await w.commitments.batch(1n)).challengeDeadline - 1n);
    await expect(openInFirst(other, 0)).to.be.revertedWithCustomError(w.disputes, "DisputesReceiptAlreadyDisputed").withArgs(leaf, 1n);
    await expect(openInSecond(other, 0)).to.be.revertedWithCustomError(w.disputes, "DisputesReceiptAlreadyDisputed").withArgs(leaf, 1n);
    const op = await w.staking.operator(w.server.address);
    expect([op.bonded, op.locked]).to.deep.equal([bonded - D.serverSlash, 0n]);
    expect(await w.disputes.disputeCount()).to.equal(1n);
  });

  it("griefing: a challenger of honest receipts loses its bond on every dispute; the server keeps its stake, gains passed audits and is paid for its locked stake", async function () {
    const w = await load();
    const open = await postBatch(w, [0, 1, 2, 3], 0);
    const griefer = w.verifiers[0]!;
    const pool = await w.rewards.getAddress();
    const [grieferBefore, poolBefore, serverBefore] = [await w.token.balanceOf(griefer.address), await w.token.balanceOf(pool), await w.token.balanceOf(w.server.address)];
    const bonded = (await w.staking.operator(w.server.address)).bonded; // 1,400: one full lock of 1,000, then the 400 left
    await open(griefer, 0);
    await open(griefer, 1);
    expect((await w.disputes.dispute(2n)).serverLocked).to.equal(bonded - D.serverSlash);
    expect((await w.staking.operator(w.server.address)).locked).to.equal(bonded);

    // both committees are drawn and commit inside their commit phases, then reveal in their reveal phases
    const committees = [await drawn(w, 1n), await drawn(w, 2n)];
    for (const [i, members] of committees.entries()) for (const m of members) await commit(w, BigInt(i + 1), m, false);
    await toRevealPhase(w, 2n);
    for (const [i, members] of committees.entries()) {
      const id = BigInt(i + 1);
      for (const m of members) await w.disputes.connect(m).revealVote(id, false, salt(m.address));
      await expect(w.disputes.settle(id)).to.emit(w.disputes, "DisputeSettled").withArgs(id, Outcome.ServerCorrect, 0n, 0n, 0, members.length);
    }
    // each bond: the base to the pool, the lock-proportional part to the server whose stake it held
    const compensation = (bonded * D.lockBondBps) / 10_000n;
    expect(await w.token.balanceOf(griefer.address)).to.equal(grieferBefore - 2n * D.challengeBond - compensation);
    expect(await w.token.balanceOf(pool)).to.equal(poolBefore + 2n * D.challengeBond);
    expect(await w.token.balanceOf(w.server.address)).to.equal(serverBefore + compensation);
    const op = await w.staking.operator(w.server.address);
    expect([op.bonded, op.locked]).to.deep.equal([bonded, 0n]);
    expect(await w.trust.record(w.server.address)).to.deep.equal([2n, 0n, 0n]);
  });

  it("copying a vote: a member that commits another member's commitment cannot reveal it and loses its locked stake", async function () {
    const w = await load();
    const open = await postBatch(w, [0, 1, 2, 3], 0);
    await open(w.verifiers[0]!, 0);
    const [honest, copier, third] = await drawn(w, 1n);
    await commit(w, 1n, honest!, true);
    const seen = (await w.disputes.vote(1n, honest!.address)).commitment;
    await w.disputes.connect(copier!).commitVote(1n, seen);
    await commit(w, 1n, third!, true);
    await toRevealPhase(w, 1n);
    await w.disputes.connect(honest!).revealVote(1n, true, salt(honest!.address));
    // once revealed, the copier knows the vote and the salt, but the commitment binds the voter's address
    for (const fault of [true, false]) {
      for (const s of [salt(honest!.address), salt(copier!.address)]) {
        await expect(w.disputes.connect(copier!).revealVote(1n, fault, s)).to.be.revertedWithCustomError(w.disputes, "DisputesBadReveal").withArgs(1n, copier!.address);
      }
    }
    await w.disputes.connect(third!).revealVote(1n, true, salt(third!.address));
    await networkHelpers.time.increaseTo((await w.disputes.dispute(1n)).revealDeadline + 1n);
    await expect(w.disputes.settle(1n))
      .to.emit(w.disputes, "DisputeSettled")
      .withArgs(1n, Outcome.ServerAtFault, D.serverSlash, (D.serverSlash * D.challengerShareBps) / 10_000n, 2, 0)
      .and.to.emit(w.disputes, "VoterPenalized")
      .withArgs(1n, copier!.address, D.voterPenalty);
    expect((await w.staking.operator(copier!.address)).bonded).to.equal(PARAMS.stake.verifierMinStake - D.voterPenalty);
    expect(await w.rewards.owed(copier!.address)).to.equal(0n);
    expect(await w.rewards.owed(honest!.address)).to.equal(D.voterReward);
  });

  it("a stale draw block is never reused: past 256 blocks the draw re-anchors on a block that does not exist yet", async function () {
    const w = await load();
    const open = await postBatch(w, [0, 1, 2, 3], 0);
    await open(w.verifiers[0]!, 0);
    const first = (await w.disputes.dispute(1n)).drawBlock;
    await networkHelpers.mine(300);
    const now = BigInt(await ethers.provider.getBlockNumber()) + 1n;
    await expect(w.disputes.drawCommittee(1n)).to.emit(w.disputes, "DrawRescheduled").withArgs(1n, now);
    const d = await w.disputes.dispute(1n);
    expect([d.drawBlock, d.status]).to.deep.equal([now, Status.Open]);
    expect(d.drawBlock).to.be.greaterThan(first);
    // its hash is unknown inside the rescheduling transaction; the next block can draw from it
    await expect(w.disputes.drawCommittee(1n)).to.emit(w.disputes, "CommitteeDrawn");
    expect((await w.disputes.dispute(1n)).status).to.equal(Status.Voting);
  });

  it("stake exhaustion: frivolous disputes that lock all of a server's stake no longer block an honest challenge; the cheater is slashed once they settle", async function () {
    const w = await load();
    const { open, leaves } = await commitBatch(w, [0, 1, 2, 3], 0);
    const [friend, honest] = [w.verifiers[0]!, w.verifiers[1]!];
    const bonded = (await w.staking.operator(w.server.address)).bonded;
    await open(friend, 0);
    await open(friend, 1);
    expect((await w.staking.operator(w.server.address)).locked).to.equal(bonded);
    // the last second of the batch's window: the honest challenge of the wrong receipt 2 still opens
    const deadline = (await w.commitments.batch(0n)).challengeDeadline;
    await networkHelpers.time.setNextBlockTimestamp(deadline);
    const honestBefore = await w.token.balanceOf(honest.address);
    await expect(open(honest, 2)).to.emit(w.disputes, "DisputeOpened");
    const opened = await w.disputes.dispute(3n);
    expect([opened.receiptLeaf, opened.serverLocked, opened.bond]).to.deep.equal([leaves[2], 0n, D.challengeBond]);
    // the server cannot withdraw its way out before this dispute can have settled
    expect(await w.staking.withdrawableAt(w.server.address)).to.equal(opened.openedAt + PARAMS.timing.maxDisputeDuration);

    const committees = [await drawn(w, 1n), await drawn(w, 2n), await drawn(w, 3n)];
    const fault = [false, false, true];
    for (const [i, members] of committees.entries()) for (const m of members) await commit(w, BigInt(i + 1), m, fault[i]!);
    await toRevealPhase(w, 3n);
    for (const [i, members] of committees.entries()) for (const m of members) await w.disputes.connect(m).revealVote(BigInt(i + 1), fault[i]!, salt(m.address));
    await w.disputes.settle(1n);
    await w.disputes.settle(2n);
    const toChallenger = (D.serverSlash * D.challengerShareBps) / 10_000n;
    await expect(w.disputes.settle(3n))
      .to.emit(w.disputes, "DisputeSettled")
      .withArgs(3n, Outcome.ServerAtFault, D.serverSlash, toChallenger, committees[2]!.length, 0);
    const op = await w.staking.operator(w.server.address);
    expect([op.bonded, op.locked]).to.deep.equal([bonded - D.serverSlash, 0n]);
    expect(await w.token.balanceOf(honest.address)).to.equal(honestBefore + toChallenger);
    expect(await w.trust.record(w.server.address)).to.deep.equal([2n, 1n, 0n]);
    expect(await w.trust.isTrusted(w.server.address)).to.equal(false);
  });

  it("lazy verifier: a recorded pass that a later dispute shows wrong costs the passing verifier its penalty, half to the challenger; laziness nets less than nothing", async function () {
    const w = await load();
    await w.auditLedger.setParams(EVERY_RECEIPT);
    await fundAudits(w, w.server.address, parseEther("1000"), parseEther("1000"));
    const { batchId, tree, leaves, open } = await commitBatch(w, [0, 1, 2, 3], 0);
    const [lazy, honest] = [w.verifiers[0]!, w.verifiers[1]!];
    const lazyStart = (await w.staking.operator(lazy.address)).bonded;
    // the lazy verifier passes all four sampled receipts without re-executing them
    const passes = passesOf(tree, leaves, [0, 1, 2, 3]);
    await expect(w.auditLedger.connect(lazy).recordPasses(batchId, passes.leaves, passes.proofs))
      .to.emit(w.auditLedger, "PassesRecorded")
      .withArgs(batchId, lazy.address, w.server.address, passes.leaves, 4n, 4n * A.rewardPerAudit);
    expect(await w.rewards.owed(lazy.address)).to.equal(4n * A.rewardPerAudit);
    // an honest verifier re-executes receipt 2, finds it wrong and disputes it; the committee agrees
    await open(honest, 2);
    const members = await drawn(w, 1n);
    for (const m of members) await commit(w, 1n, m, true);
    await toRevealPhase(w, 1n);
    for (const m of members) await w.disputes.connect(m).revealVote(1n, true, salt(m.address));
    await w.disputes.settle(1n);

    const index = passes.leaves.indexOf(leaves[2]!);
    const honestBefore = await w.token.balanceOf(honest.address);
    const lazyStake = (await w.staking.operator(lazy.address)).bonded;
    await expect(w.auditLedger.connect(w.stranger).slashFalsePass(batchId, lazy.address, passes.leaves, index))
      .to.emit(w.auditLedger, "FalsePassSlashed")
      .withArgs(batchId, lazy.address, leaves[2], 1n, A.falsePassPenalty, (A.falsePassPenalty * A.exposerShareBps) / 10_000n);
    expect((await w.staking.operator(lazy.address)).bonded).to.equal(lazyStake - A.falsePassPenalty);
    expect(await w.token.balanceOf(honest.address)).to.equal(honestBefore + (A.falsePassPenalty * A.exposerShareBps) / 10_000n);
    await expect(w.auditLedger.slashFalsePass(batchId, lazy.address, passes.leaves, index))
      .to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerAlreadySlashed")
      .withArgs(lazy.address, leaves[2]);
    // the receipts nobody showed wrong cost it nothing
    await expect(w.auditLedger.slashFalsePass(batchId, lazy.address, passes.leaves, passes.leaves.indexOf(leaves[0]!)))
      .to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerPassNotFalse")
      .withArgs(leaves[0], 0n);
    // four rewards (and a vote's reward if it sat on the committee) against one penalty
    const net = (await w.rewards.owed(lazy.address)) - (lazyStart - (await w.staking.operator(lazy.address)).bonded);
    const voted = members.includes(lazy) ? D.voterReward : 0n;
    expect(net).to.equal(4n * A.rewardPerAudit + voted - A.falsePassPenalty);
    expect(net < 0n).to.equal(true);
  });

  it("inflating a friend's trust: only sampled receipts count, friends vouching for one batch add nothing, rewards stop at the server's budget", async function () {
    const w = await load();
    const paid = parseEther("100"); // budget: rewardBudgetBps of it, 5 tokens
    await fundAudits(w, w.server.address, paid, parseEther("1000"));
    const { batchId, tree, leaves } = await commitBatch(w, [0, 1, 2, 3], 0);
    const all = passesOf(tree, leaves, [0, 1, 2, 3]);
    const [a, b, c] = [w.verifiers[0]!, w.verifiers[1]!, w.verifiers[2]!];
    // at one receipt in 10⁹, none of these is in the sample
    await w.auditLedger.setParams({ ...A, sampleRatePpb: 1n });
    await expect(w.auditLedger.connect(a).recordPasses(batchId, all.leaves.slice(0, 1), all.proofs.slice(0, 1)))
      .to.be.revertedWithCustomError(w.auditLedger, "AuditLedgerNotSampled")
      .withArgs(batchId, all.leaves[0]);
    await w.auditLedger.setParams(EVERY_RECEIPT);
    const budget = (paid * A.rewardBudgetBps) / 10_000n;
    await expect(w.auditLedger.connect(a).recordPasses(batchId, all.leaves, all.proofs))
      .to.emit(w.auditLedger, "PassesRecorded")
      .withArgs(batchId, a.address, w.server.address, all.leaves, 4n, 4n * A.rewardPerAudit);
    await expect(w.auditLedger.connect(b).recordPasses(batchId, all.leaves, all.proofs))
      .to.emit(w.auditLedger, "PassesRecorded")
      .withArgs(batchId, b.address, w.server.address, all.leaves, 0n, budget - 4n * A.rewardPerAudit);
    await expect(w.auditLedger.connect(c).recordPasses(batchId, all.leaves.slice(0, 2), all.proofs.slice(0, 2)))
      .to.emit(w.auditLedger, "PassesRecorded")
      .withArgs(batchId, c.address, w.server.address, all.leaves.slice(0, 2), 0n, 0n);
    expect(await w.trust.record(w.server.address)).to.deep.equal([4n, 0n, paid]);
    expect(await w.auditLedger.creditedOf(batchId)).to.equal(4n);
    expect(await w.auditLedger.rewardBudgetLeft(w.server.address)).to.equal(0n);
    // a server nobody paid unlocks no reward at all
    expect(await w.auditLedger.rewardBudgetLeft(w.server2.address)).to.equal(0n);
  });
});
