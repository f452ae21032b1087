import { expect } from "chai";
import { network } from "hardhat";
import { AbiCoder, ZeroHash, keccak256, parseEther, toBeHex, toUtf8Bytes } from "ethers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/types";
import { MerkleTree } from "../../protocol/merkle.js";
import { receiptLeaf, type Receipt } from "../../protocol/receipt.js";
import { PARAMS, VARIANT, joinAsVerifiers, registerServer, worldFixture, type World } from "./fixtures.js";

const { ethers, networkHelpers } = await network.create();
const world = worldFixture(ethers);
const D = PARAMS.disputes;
const Status = { None: 0n, Open: 1n, Voting: 2n, Settled: 3n };
const Outcome = { None: 0n, ServerAtFault: 1n, ServerCorrect: 2n, NoQuorum: 3n };
const SALT = keccak256(toUtf8Bytes("salt"));
/** The bond of a dispute that locks `locked` of the server's stake (IDisputes.bondFor). */
const bondFor = (locked: bigint) => D.challengeBond + (locked * D.lockBondBps) / 10_000n;
/** The bond of a dispute that locks a full `serverSlash`. */
const BOND = bondFor(D.serverSlash);

interface DisputeWorld extends World {
  verifiers: HardhatEthersSigner[];
  receipts: Receipt[];
  tree: MerkleTree;
  batchId: bigint;
}

function receiptOf(server: string, step: number): Receipt {
  return {
    sessionId: keccak256(toUtf8Bytes("session")),
    step: BigInt(step),
    firstLayer: 0,
    lastLayer: 4,
    variantId: VARIANT,
    inputHash: keccak256(toBeHex(2 * step + 1, 32)),
    outputHash: keccak256(toBeHex(2 * step + 2, 32)),
    tokens: 1,
    server,
  };
}

/** A server of layers [0, 4) that committed four receipts, and five registered verifiers. */
async function disputeWorldFixture(): Promise<DisputeWorld> {
  const w = await world();
  const extra = (await ethers.getSigners()).slice(7, 11);
  const verifiers = [w.verifier, ...extra];
  await joinAsVerifiers(w, verifiers);
  await registerServer(w, w.server, 0, 4);
  const receipts = [0, 1, 2, 3].map((i) => receiptOf(w.server.address, i));
  const tree = new MerkleTree(receipts.map(receiptLeaf));
  await w.commitments.connect(w.server).postBatch(tree.root, VARIANT, 0, 4, 4, 0, 0);
  return { ...w, verifiers, receipts, tree, batchId: 0n };
}

function open(w: DisputeWorld, challenger: HardhatEthersSigner, i = 0) {
  return w.disputes.connect(challenger).openDispute(w.batchId, w.receipts[i]!, w.tree.proof(i));
}

function signerOf(w: DisputeWorld, address: string): HardhatEthersSigner {
  const s = w.verifiers.find((v) => v.address === address);
  if (s === undefined) throw new Error(`${address} is not a test verifier`);
  return s;
}

/** Opens a dispute by verifiers[0], mines past its draw block and draws; returns the committee. */
async function openAndDraw(w: DisputeWorld, i = 0): Promise<{ id: bigint; members: HardhatEthersSigner[] }> {
  await open(w, w.verifiers[0]!, i);
  const id = await w.disputes.disputeCount();
  await networkHelpers.mine(2);
  await w.disputes.drawCommittee(id);
  return { id, members: (await w.disputes.committee(id)).map((a) => signerOf(w, a)) };
}

async function vote(w: DisputeWorld, id: bigint, votes: [HardhatEthersSigner, boolean][]): Promise<void> {
  for (const [m, fault] of votes) await w.disputes.connect(m).commitVote(id, await w.disputes.voteCommitment(id, m.address, fault, SALT));
  const d = await w.disputes.dispute(id);
  await networkHelpers.time.increaseTo(d.commitDeadline + 1n);
  for (const [m, fault] of votes) await w.disputes.connect(m).revealVote(id, fault, SALT);
}

describe("Disputes", function () {
  const load = () => networkHelpers.loadFixture(disputeWorldFixture);

  describe("openDispute", function () {
    it("locks the server's stake under this dispute, takes the bond, keeps the stake slashable and emits DisputeOpened", async function () {
      const w = await load();
      const challenger = w.verifiers[0]!;
      const before = await w.token.balanceOf(challenger.address);
      const leaf = receiptLeaf(w.receipts[1]!);
      const at = BigInt(await networkHelpers.time.latest()) + 5n;
      await networkHelpers.time.setNextBlockTimestamp(at);
      const block = BigInt(await ethers.provider.getBlockNumber()) + 1n;
      await expect(open(w, challenger, 1))
        .to.emit(w.disputes, "DisputeOpened")
        .withArgs(1n, 0n, w.server.address, challenger.address, leaf, BOND, D.serverSlash, block + 1n, at + D.commitPeriod, at + D.commitPeriod + D.revealPeriod);
      const d = await w.disputes.dispute(1);
      expect([d.challenger, d.server, d.batchId, d.receiptLeaf, d.bond, d.serverLocked, d.status, d.outcome]).to.deep.equal([
        challenger.address, w.server.address, 0n, leaf, BOND, D.serverSlash, Status.Open, Outcome.None,
      ]);
      expect(BOND).to.equal(await w.disputes.bondFor(D, D.serverSlash));
      const op = await w.staking.operator(w.server.address);
      // no withdrawal before the dispute can have settled, even after the batch's own deadline
      expect([op.locked, op.slashableUntil]).to.deep.equal([D.serverSlash, at + PARAMS.timing.maxDisputeDuration]);
      expect(await w.token.balanceOf(challenger.address)).to.equal(before - BOND);
      expect(await w.disputes.disputeOfReceipt(leaf)).to.equal(1n);
    });

    it("rejects a non-verifier, a closed window, a receipt not in the batch, a receipt naming the server under another server's root and a second dispute of one receipt", async function () {
      const w = await load();
      const challenger = w.verifiers[0]!;
      await expect(open(w, w.stranger)).to.be.revertedWithCustomError(w.disputes, "DisputesNotVerifier").withArgs(w.stranger.address);
      const wrong = { ...w.receipts[0]!, outputHash: ZeroHash };
      await expect(w.disputes.connect(challenger).openDispute(0, wrong, w.tree.proof(0)))
        .to.be.revertedWithCustomError(w.disputes, "ReceiptNotInBatch")
        .withArgs(0n, receiptLeaf(wrong));
      // no signature is asked for: only the server posts its roots, so another server cannot frame it
      // by committing receipts that name it (under its own root they are not the poster's)
      await registerServer(w, w.server2, 0, 4);
      const framed = { ...receiptOf(w.server.address, 7), outputHash: ZeroHash };
      const framing = new MerkleTree([receiptLeaf(framed), receiptLeaf(receiptOf(w.server2.address, 0))]);
      await w.commitments.connect(w.server2).postBatch(framing.root, VARIANT, 0, 4, 2, 0, 0);
      await expect(w.disputes.connect(challenger).openDispute(1, framed, framing.proof(0)))
        .to.be.revertedWithCustomError(w.disputes, "ReceiptNotInBatch")
        .withArgs(1n, receiptLeaf(framed));
      await expect(w.disputes.connect(challenger).openDispute(0, framed, framing.proof(0)))
        .to.be.revertedWithCustomError(w.disputes, "ReceiptNotInBatch")
        .withArgs(0n, receiptLeaf(framed));
      await open(w, challenger, 0);
      // regression (double slashing of one receipt): one dispute per receipt, ever
      await expect(open(w, w.verifiers[1]!, 0))
        .to.be.revertedWithCustomError(w.disputes, "DisputesReceiptAlreadyDisputed")
        .withArgs(receiptLeaf(w.receipts[0]!), 1n);
      const deadline = (await w.commitments.batch(0)).challengeDeadline;
      await networkHelpers.time.setNextBlockTimestamp(deadline + 1n);
      await expect(open(w, challenger, 1))
        .to.be.revertedWithCustomError(w.disputes, "ReceiptWindowClosed")
        .withArgs(0n, deadline, deadline + 1n);
    });

    it("opens with nothing to lock when other disputes hold all of the server's stake, for the base bond", async function () {
      const w = await load();
      await open(w, w.verifiers[0]!, 0);
      await open(w, w.verifiers[0]!, 1);
      const total = (await w.staking.operator(w.server.address)).bonded;
      expect((await w.staking.operator(w.server.address)).locked).to.equal(total);
      const before = await w.token.balanceOf(w.verifiers[1]!.address);
      await expect(open(w, w.verifiers[1]!, 2)).to.emit(w.disputes, "DisputeOpened");
      const d = await w.disputes.dispute(3);
      expect([d.serverLocked, d.bond]).to.deep.equal([0n, D.challengeBond]);
      expect((await w.disputes.dispute(2)).bond).to.equal(bondFor(total - D.serverSlash));
      expect(await w.token.balanceOf(w.verifiers[1]!.address)).to.equal(before - D.challengeBond);
      expect((await w.staking.operator(w.server.address)).locked).to.equal(total);
    });
  });

  describe("committee", function () {
    it("is drawn after the challenge, from staked verifiers, never the challenger, with each member's stake locked", async function () {
      const w = await load();
      await open(w, w.verifiers[0]!);
      const d = await w.disputes.dispute(1);
      await expect(w.disputes.drawCommittee(1))
        .to.be.revertedWithCustomError(w.disputes, "DisputesDrawTooEarly")
        .withArgs(1n, d.drawBlock, d.drawBlock);
      await networkHelpers.mine(1);
      const tx = await w.disputes.drawCommittee(1);
      const members = await w.disputes.committee(1);
      await expect(tx).to.emit(w.disputes, "CommitteeDrawn").withArgs(1n, members);
      expect(members.length).to.equal(Number(D.committeeSize));
      expect(new Set(members).size).to.equal(members.length);
      expect(members).to.not.include(w.verifiers[0]!.address);
      for (const m of members) {
        expect(w.verifiers.map((v) => v.address)).to.include(m);
        expect((await w.staking.operator(m)).locked).to.equal(D.voterPenalty);
        expect((await w.disputes.vote(1, m)).member).to.equal(true);
      }
      expect((await w.disputes.dispute(1)).status).to.equal(Status.Voting);
      await expect(w.disputes.drawCommittee(1))
        .to.be.revertedWithCustomError(w.disputes, "DisputesWrongStatus")
        .withArgs(1n, Status.Voting, Status.Open);
    });

    it("a member whose stake is locked on a committee stays an active verifier and can still challenge", async function () {
      const w = await load();
      const { members } = await openAndDraw(w, 0);
      const member = members[0]!;
      expect((await w.staking.operator(member.address)).locked).to.equal(D.voterPenalty);
      expect(await w.staking.isActiveVerifier(member.address)).to.equal(true);
      await expect(open(w, member, 1)).to.emit(w.disputes, "DisputeOpened");
      expect((await w.disputes.dispute(2)).challenger).to.equal(member.address);
    });

    it("a seat needs the full penalty free: a verifier whose stake is locked elsewhere is not drawn", async function () {
      const w = await load();
      const [challenger, kept, ...busy] = w.verifiers;
      for (const v of busy) await w.staking.connect(w.slasher).lock(v.address, keccak256(toUtf8Bytes(v.address)), PARAMS.stake.verifierMinStake);
      await open(w, challenger!);
      await networkHelpers.mine(2);
      await w.disputes.drawCommittee(1);
      // the draw looks at committeeSize × DRAW_ATTEMPTS_PER_SEAT candidates picked by the block hash: `kept`
      // sits if it is among them (it almost always is), and no busy verifier ever does
      const anchor = (await ethers.provider.getBlock(Number((await w.disputes.dispute(1)).drawBlock)))!.hash!;
      const coder = AbiCoder.defaultAbiCoder();
      const seed = keccak256(coder.encode(["bytes32", "uint256"], [anchor, 1n]));
      const pool = await w.staking.verifierCount();
      const attempts = D.committeeSize * (await w.disputes.DRAW_ATTEMPTS_PER_SEAT());
      const candidates: string[] = [];
      for (let i = 0n; i < attempts; i++) candidates.push(await w.staking.verifierAt(BigInt(keccak256(coder.encode(["bytes32", "uint256"], [seed, i]))) % pool));
      expect(await w.disputes.committee(1)).to.deep.equal(candidates.includes(kept!.address) ? [kept!.address] : []);
    });

    it("a verifier cannot sit on its own dispute: with one other verifier, the committee is that one", async function () {
      const w = await load();
      for (const v of w.verifiers.slice(2)) await w.staking.connect(v).deregister();
      await open(w, w.verifiers[0]!);
      await networkHelpers.mine(2);
      await w.disputes.drawCommittee(1);
      expect(await w.disputes.committee(1)).to.deep.equal([w.verifiers[1]!.address]);
    });
  });

  describe("votes", function () {
    it("commit then reveal, by members only, once, matching the commitment, each in its phase", async function () {
      const w = await load();
      const { id, members } = await openAndDraw(w);
      const [a, b] = [members[0]!, members[1]!];
      const commitment = await w.disputes.voteCommitment(id, a.address, true, SALT);
      expect(commitment).to.equal(
        keccak256(ethers.AbiCoder.defaultAbiCoder().encode(["uint256", "address", "bool", "bytes32"], [id, a.address, true, SALT])),
      );
      await expect(w.disputes.connect(w.verifiers[0]!).commitVote(id, commitment))
        .to.be.revertedWithCustomError(w.disputes, "DisputesNotOnCommittee")
        .withArgs(id, w.verifiers[0]!.address);
      await expect(w.disputes.connect(a).commitVote(id, commitment)).to.emit(w.disputes, "VoteCommitted").withArgs(id, a.address);
      await expect(w.disputes.connect(a).commitVote(id, commitment)).to.be.revertedWithCustomError(w.disputes, "DisputesAlreadyVoted").withArgs(id, a.address);
      const d = await w.disputes.dispute(id);
      const now = BigInt(await networkHelpers.time.latest()) + 1n;
      await networkHelpers.time.setNextBlockTimestamp(now);
      await expect(w.disputes.connect(a).revealVote(id, true, SALT))
        .to.be.revertedWithCustomError(w.disputes, "DisputesNotRevealTime")
        .withArgs(id, d.commitDeadline, d.revealDeadline, now);
      await networkHelpers.time.increaseTo(d.commitDeadline + 1n);
      await expect(w.disputes.connect(b).commitVote(id, commitment))
        .to.be.revertedWithCustomError(w.disputes, "DisputesCommitClosed")
        .withArgs(id, d.commitDeadline, d.commitDeadline + 2n);
      await expect(w.disputes.connect(a).revealVote(id, false, SALT)).to.be.revertedWithCustomError(w.disputes, "DisputesBadReveal").withArgs(id, a.address);
      await expect(w.disputes.connect(b).revealVote(id, true, SALT)).to.be.revertedWithCustomError(w.disputes, "DisputesBadReveal").withArgs(id, b.address);
      await expect(w.disputes.connect(a).revealVote(id, true, SALT)).to.emit(w.disputes, "VoteRevealed").withArgs(id, a.address, true);
      expect((await w.disputes.vote(id, a.address)).serverAtFault).to.equal(true);
      expect((await w.disputes.dispute(id)).faultVotes).to.equal(1n);
    });
  });

  describe("settle", function () {
    it("server at fault: slashed, challenger paid its share and its bond, minority voter penalized, trust falls below θ", async function () {
      const w = await load();
      const { id, members } = await openAndDraw(w);
      const [a, b, c] = [members[0]!, members[1]!, members[2]!];
      const challenger = w.verifiers[0]!;
      const before = await w.token.balanceOf(challenger.address);
      const pool = await w.rewards.getAddress();
      const poolBefore = await w.token.balanceOf(pool);
      const stakeBefore = (await w.staking.operator(w.server.address)).bonded;
      await vote(w, id, [[a, true], [b, true], [c, false]]);
      const share = (D.serverSlash * D.challengerShareBps) / 10_000n;
      await expect(w.disputes.settle(id))
        .to.emit(w.disputes, "DisputeSettled")
        .withArgs(id, Outcome.ServerAtFault, D.serverSlash, share, 2, 1)
        .and.to.emit(w.disputes, "VoterPenalized")
        .withArgs(id, c.address, D.voterPenalty);
      expect(await w.token.balanceOf(challenger.address)).to.equal(before + share + BOND);
      expect(await w.token.balanceOf(pool)).to.equal(poolBefore + D.serverSlash - share + D.voterPenalty);
      expect(await w.rewards.owed(a.address)).to.equal(D.voterReward);
      expect(await w.rewards.owed(b.address)).to.equal(D.voterReward);
      expect(await w.rewards.owed(c.address)).to.equal(0n);
      const op = await w.staking.operator(w.server.address);
      expect([op.bonded, op.locked]).to.deep.equal([stakeBefore - D.serverSlash, 0n]);
      for (const m of members) expect((await w.staking.operator(m.address)).locked).to.equal(0n);
      expect((await w.staking.operator(c.address)).bonded).to.equal(PARAMS.stake.verifierMinStake - D.voterPenalty);
      expect(await w.trust.record(w.server.address)).to.deep.equal([0n, 1n, 0n]);
      expect(await w.trust.isTrusted(w.server.address)).to.equal(false);
      const d = await w.disputes.dispute(id);
      expect([d.status, d.outcome]).to.deep.equal([Status.Settled, Outcome.ServerAtFault]);
      await expect(w.disputes.settle(id)).to.be.revertedWithCustomError(w.disputes, "DisputesWrongStatus").withArgs(id, Status.Settled, Status.Voting);
    });

    it("server correct: the base bond goes to the pool, its lock part to the server, the lock is released, a passed audit is recorded", async function () {
      const w = await load();
      const { id, members } = await openAndDraw(w);
      const pool = await w.rewards.getAddress();
      const [poolBefore, serverBefore] = [await w.token.balanceOf(pool), await w.token.balanceOf(w.server.address)];
      await vote(w, id, members.map((m) => [m, false] as [HardhatEthersSigner, boolean]));
      await expect(w.disputes.settle(id))
        .to.emit(w.disputes, "DisputeSettled")
        .withArgs(id, Outcome.ServerCorrect, 0n, 0n, 0, 3)
        .and.to.emit(w.disputes, "ServerCompensated")
        .withArgs(id, w.server.address, BOND - D.challengeBond);
      expect(await w.token.balanceOf(pool)).to.equal(poolBefore + D.challengeBond);
      expect(await w.token.balanceOf(w.server.address)).to.equal(serverBefore + BOND - D.challengeBond);
      expect((await w.staking.operator(w.server.address)).locked).to.equal(0n);
      expect(await w.trust.record(w.server.address)).to.deep.equal([1n, 0n, 0n]);
    });

    it("no quorum: nothing is slashed, the bond is returned, members who never revealed lose their locked stake", async function () {
      const w = await load();
      const { id, members } = await openAndDraw(w);
      const challenger = w.verifiers[0]!;
      const before = await w.token.balanceOf(challenger.address);
      const d = await w.disputes.dispute(id);
      await expect(w.disputes.settle(id))
        .to.be.revertedWithCustomError(w.disputes, "DisputesNotSettleable")
        .withArgs(id, d.revealDeadline + 1n, BigInt(await networkHelpers.time.latest()) + 1n);
      await networkHelpers.time.increaseTo(d.revealDeadline + 1n);
      await expect(w.disputes.settle(id)).to.emit(w.disputes, "DisputeSettled").withArgs(id, Outcome.NoQuorum, 0n, 0n, 0, 0);
      expect(await w.token.balanceOf(challenger.address)).to.equal(before + BOND);
      for (const m of members) expect((await w.staking.operator(m.address)).bonded).to.equal(PARAMS.stake.verifierMinStake - D.voterPenalty);
      expect((await w.staking.operator(w.server.address)).locked).to.equal(0n);
      expect(await w.trust.record(w.server.address)).to.deep.equal([0n, 0n, 0n]);
    });

    it("a dispute whose committee was never drawn settles with no quorum after its reveal deadline", async function () {
      const w = await load();
      await open(w, w.verifiers[0]!);
      const d = await w.disputes.dispute(1);
      await networkHelpers.time.increaseTo(d.commitDeadline + 1n);
      await expect(w.disputes.drawCommittee(1))
        .to.be.revertedWithCustomError(w.disputes, "DisputesCommitClosed")
        .withArgs(1n, d.commitDeadline, d.commitDeadline + 2n);
      await networkHelpers.time.increaseTo(d.revealDeadline + 1n);
      await expect(w.disputes.settle(1)).to.emit(w.disputes, "DisputeSettled").withArgs(1n, Outcome.NoQuorum, 0n, 0n, 0, 0);
    });

    it("at fault, a dispute that locked less than serverSlash is settled against what has become free since", async function () {
      const w = await load();
      const total = (await w.staking.operator(w.server.address)).bonded; // 1,400
      // #1 locks 1,000, #2 the 400 left, #3 and #4 nothing
      const disputes = [await openAndDraw(w, 0), await openAndDraw(w, 1), await openAndDraw(w, 2), await openAndDraw(w, 3)];
      expect(await Promise.all(disputes.map(async (d) => (await w.disputes.dispute(d.id)).serverLocked))).to.deep.equal([D.serverSlash, total - D.serverSlash, 0n, 0n]);
      const faults = [false, true, true, true];
      for (const [i, d] of disputes.entries()) {
        for (const m of d.members) await w.disputes.connect(m).commitVote(d.id, await w.disputes.voteCommitment(d.id, m.address, faults[i]!, SALT));
      }
      await networkHelpers.time.increaseTo((await w.disputes.dispute(4n)).commitDeadline + 1n);
      for (const [i, d] of disputes.entries()) for (const m of d.members) await w.disputes.connect(m).revealVote(d.id, faults[i]!, SALT);
      const share = (x: bigint) => (x * D.challengerShareBps) / 10_000n;
      const n = (i: number) => disputes[i]!.members.length;
      // #1 (server correct) frees 1,000; #2 tops its 400 up to a full slash; #3 takes the 400 left; #4 finds nothing
      await expect(w.disputes.settle(1n)).to.emit(w.disputes, "DisputeSettled").withArgs(1n, Outcome.ServerCorrect, 0n, 0n, 0, n(0));
      await expect(w.disputes.settle(2n)).to.emit(w.disputes, "DisputeSettled").withArgs(2n, Outcome.ServerAtFault, D.serverSlash, share(D.serverSlash), n(1), 0);
      const rest = total - D.serverSlash;
      await expect(w.disputes.settle(3n)).to.emit(w.disputes, "DisputeSettled").withArgs(3n, Outcome.ServerAtFault, rest, share(rest), n(2), 0);
      await expect(w.disputes.settle(4n)).to.emit(w.disputes, "DisputeSettled").withArgs(4n, Outcome.ServerAtFault, 0n, 0n, n(3), 0);
      const op = await w.staking.operator(w.server.address);
      expect([op.bonded, op.locked]).to.deep.equal([0n, 0n]);
      expect(await w.token.balanceOf(await w.disputes.getAddress())).to.equal(0n);
      expect(await w.trust.record(w.server.address)).to.deep.equal([1n, 3n, 0n]);
    });

    it("regression: one dispute's slash leaves another open dispute's lock on the same server whole", async function () {
      const w = await load();
      const slash = parseEther("500"); // the server has 1,400 staked: two locks of 500 fit
      await w.disputes.setParams({ ...D, serverSlash: slash });
      const first = await openAndDraw(w, 0);
      const second = await openAndDraw(w, 1);
      expect((await w.staking.operator(w.server.address)).locked).to.equal(2n * slash);
      await vote(w, first.id, first.members.map((m) => [m, true] as [HardhatEthersSigner, boolean]));
      await w.disputes.settle(first.id);
      expect((await w.staking.operator(w.server.address)).locked).to.equal(slash);
      const lockId = keccak256(ethers.AbiCoder.defaultAbiCoder().encode(["string", "uint256"], ["server", second.id]));
      expect(await w.staking.lockOf(await w.disputes.getAddress(), lockId)).to.deep.equal([w.server.address, slash]);
      const d = await w.disputes.dispute(second.id);
      await networkHelpers.time.increaseTo(d.revealDeadline + 1n);
      await w.disputes.settle(second.id);
      expect((await w.staking.operator(w.server.address)).locked).to.equal(0n);
    });
  });

  describe("every vote pattern of a committee of three", function () {
    type Act = "none" | "fault" | "correct";
    const acts: Act[] = ["none", "fault", "correct"];
    const patterns = acts.flatMap((a) => acts.flatMap((b) => acts.map((c) => [a, b, c] as Act[])));

    it("settles by strict majority, conserves tokens, penalizes exactly the members off the majority, releases every lock", async function () {
      const outcomes: Record<string, bigint> = {};
      for (const pattern of patterns) {
        const w = await load();
        const challenger = w.verifiers[0]!;
        const holders = [await w.staking.getAddress(), await w.disputes.getAddress(), await w.rewards.getAddress(), challenger.address, w.server.address];
        const held = async () => (await Promise.all(holders.map((h) => w.token.balanceOf(h)))).reduce((x, y) => x + y, 0n);
        const total = await held();
        const { id, members } = await openAndDraw(w);
        const acting = members.flatMap((m, i) => (pattern[i] === "none" ? [] : [[m, pattern[i] === "fault"] as [HardhatEthersSigner, boolean]]));
        await vote(w, id, acting);
        await networkHelpers.time.increaseTo((await w.disputes.dispute(id)).revealDeadline + 1n);
        await w.disputes.settle(id);

        const faults = pattern.filter((a) => a === "fault").length;
        const corrects = pattern.filter((a) => a === "correct").length;
        const expected = faults * 2 > 3 ? Outcome.ServerAtFault : corrects * 2 > 3 ? Outcome.ServerCorrect : Outcome.NoQuorum;
        const outcome = (await w.disputes.dispute(id)).outcome;
        outcomes[pattern.join(",")] = outcome;
        expect(outcome, pattern.join(",")).to.equal(expected);
        expect(await held(), "tokens only move between staking, disputes, pool, challenger and server").to.equal(total);
        expect(await w.token.balanceOf(await w.disputes.getAddress())).to.equal(0n);
        expect(await w.staking.totalStaked()).to.equal(await w.token.balanceOf(await w.staking.getAddress()));
        expect((await w.staking.operator(w.server.address)).locked).to.equal(0n);
        const majority = expected === Outcome.ServerAtFault ? "fault" : expected === Outcome.ServerCorrect ? "correct" : undefined;
        for (const [i, m] of members.entries()) {
          const withMajority = pattern[i] !== "none" && (majority === undefined || pattern[i] === majority);
          const op = await w.staking.operator(m.address);
          expect([op.bonded, op.locked], `${pattern.join(",")} member ${i}`).to.deep.equal([
            PARAMS.stake.verifierMinStake - (withMajority ? 0n : D.voterPenalty),
            0n,
          ]);
          expect(await w.rewards.owed(m.address)).to.equal(majority !== undefined && pattern[i] === majority ? D.voterReward : 0n);
        }
      }
      expect(Object.keys(outcomes).length).to.equal(27);
    });
  });

  describe("governance", function () {
    it("accepts consistent parameters only; periods must fit in the longest dispute", async function () {
      const w = await load();
      const max = PARAMS.timing.maxDisputeDuration;
      const args = (p: typeof D) => [[p.challengeBond, p.serverSlash, p.voterPenalty, p.voterReward, p.challengerShareBps, p.lockBondBps, p.committeeSize, p.commitPeriod, p.revealPeriod], max];
      for (const bad of [
        { ...D, committeeSize: 0n },
        { ...D, committeeSize: 2n },
        { ...D, committeeSize: 17n },
        { ...D, challengerShareBps: 10_001n },
        { ...D, commitPeriod: 0n },
        { ...D, commitPeriod: max, revealPeriod: 1n },
        { ...D, challengeBond: 0n },
        { ...D, serverSlash: 0n },
        { ...D, lockBondBps: 10_001n },
        { ...D, challengeBond: 2n ** 127n, serverSlash: 2n ** 127n },
      ]) {
        await expect(w.disputes.setParams(bad)).to.be.revertedWithCustomError(w.disputes, "DisputesBadParams").withArgs(...args(bad));
      }
      await expect(w.disputes.connect(w.stranger).setParams(D))
        .to.be.revertedWithCustomError(w.disputes, "AccessControlUnauthorizedAccount")
        .withArgs(w.stranger.address, await w.disputes.GOVERNANCE_ROLE());
      await expect(w.disputes.dispute(0)).to.be.revertedWithCustomError(w.disputes, "DisputesUnknown").withArgs(0n);
    });
  });
});
