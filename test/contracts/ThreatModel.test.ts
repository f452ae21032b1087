import { expect } from "chai";
import { network } from "hardhat";
import { keccak256, toBeHex, toUtf8Bytes } from "ethers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/types";
import { receiptDomain } from "../../protocol/eip712.js";
import { MerkleTree } from "../../protocol/merkle.js";
import { receiptLeaf, signReceipt, type Receipt } from "../../protocol/receipt.js";
import { MINTED, PARAMS, VARIANT, registerServer, stake, worldFixture, type World } from "./fixtures.js";

// Attacks of docs/threat-model.md that Disputes answers and Disputes.test.ts does not already show.

const { ethers, networkHelpers } = await network.create();
const world = worldFixture(ethers);
const D = PARAMS.disputes;
const Outcome = { ServerAtFault: 1n, ServerCorrect: 2n, NoQuorum: 3n };
const Status = { Open: 1n, Voting: 2n };
const salt = (who: string) => keccak256(toUtf8Bytes(`salt of ${who}`));

interface Committed {
  receipt: Receipt;
  signature: string;
}

interface ThreatWorld extends World {
  verifiers: HardhatEthersSigner[];
  /** Receipts 0..4 of one session, signed by the server. */
  signed: Committed[];
}

/** Batch `batchId` commits the receipts `indices` of `signed`; returns a dispute opener for it. */
async function postBatch(w: ThreatWorld, indices: number[], fromTime: number) {
  const tree = new MerkleTree(indices.map((i) => receiptLeaf(w.signed[i]!.receipt)));
  await w.commitments.connect(w.server).postBatch(tree.root, VARIANT, 0, 4, indices.length, fromTime, fromTime);
  const batchId = (await w.commitments.batchCount()) - 1n;
  return (challenger: HardhatEthersSigner, i: number) => {
    const at = indices.indexOf(i);
    const { receipt, signature } = w.signed[i]!;
    return w.disputes.connect(challenger).openDispute(batchId, receipt, signature, tree.proof(at));
  };
}

/** Stakes the verifier minimum, registers, and approves Disputes to take bonds. */
async function joinAsVerifier(w: World, who: HardhatEthersSigner): Promise<void> {
  await stake(w, who, PARAMS.stake.verifierMinStake);
  await w.staking.connect(who).registerVerifier();
  await w.token.connect(who).approve(await w.disputes.getAddress(), MINTED);
}

/** A server of layers [0, 4) with five signed receipts, five registered verifiers with their bond approved. */
async function threatWorld(): Promise<ThreatWorld> {
  const w = await world();
  const extra = (await ethers.getSigners()).slice(7, 11);
  for (const v of extra) await w.token.mint(v.address, MINTED);
  const verifiers = [w.verifier, ...extra];
  for (const v of verifiers) await joinAsVerifier(w, v);
  await registerServer(w, w.server, 0, 4);
  const domain = receiptDomain(w.chainId, await w.commitments.getAddress());
  const signed: Committed[] = [];
  for (let step = 0; step < 5; step++) {
    const receipt: Receipt = {
      sessionId: keccak256(toUtf8Bytes("threat session")),
      step: BigInt(step),
      firstLayer: 0,
      lastLayer: 4,
      variantId: VARIANT,
      inputHash: keccak256(toBeHex(100 + step, 32)),
      outputHash: keccak256(toBeHex(200 + step, 32)),
      tokens: 1,
      server: w.server.address,
    };
    signed.push({ receipt, signature: await signReceipt(w.server, domain, receipt) });
  }
  return { ...w, verifiers, signed };
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
    const leaf = receiptLeaf(w.signed[0]!.receipt);
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

  it("griefing: a challenger of honest receipts loses its bond on every dispute; the server keeps its stake and gains passed audits", async function () {
    const w = await load();
    const open = await postBatch(w, [0, 1, 2, 3], 0);
    const griefer = w.verifiers[0]!;
    const pool = await w.rewards.getAddress();
    const [grieferBefore, poolBefore] = [await w.token.balanceOf(griefer.address), await w.token.balanceOf(pool)];
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
    expect(await w.token.balanceOf(griefer.address)).to.equal(grieferBefore - 2n * D.challengeBond);
    expect(await w.token.balanceOf(pool)).to.equal(poolBefore + 2n * D.challengeBond);
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

  it("stake exhaustion (open): frivolous disputes that lock all of a server's stake block an honest challenge until they settle", async function () {
    const w = await load();
    const open = await postBatch(w, [0, 1, 2, 3], 0);
    const [friend, honest] = [w.verifiers[0]!, w.verifiers[1]!];
    await open(friend, 0);
    await open(friend, 1);
    await expect(open(honest, 2)).to.be.revertedWithCustomError(w.disputes, "DisputesNothingToLock").withArgs(w.server.address);
    // no dispute can settle before its commit deadline, which lies past the batch's challenge deadline
    const deadline = (await w.commitments.batch(0n)).challengeDeadline;
    expect((await w.disputes.dispute(1n)).commitDeadline).to.be.greaterThan(deadline);
    await networkHelpers.time.increaseTo(deadline - 1n);
    await expect(open(honest, 2)).to.be.revertedWithCustomError(w.disputes, "DisputesNothingToLock").withArgs(w.server.address);
    await expect(w.disputes.settle(1n)).to.be.revertedWithCustomError(w.disputes, "DisputesNotSettleable");
  });
});
