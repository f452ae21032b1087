import { expect } from "chai";
import { network } from "hardhat";
import { ZeroHash, keccak256, parseEther, toUtf8Bytes } from "ethers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/types";
import { ENCODING_CODE, activationHash, encodeActivations, type EncodedActivations } from "../../protocol/activations.js";
import { onChain } from "../../node/chain/dataResponder.js";
import { MerkleTree } from "../../protocol/merkle.js";
import { receiptLeaf, type Receipt } from "../../protocol/receipt.js";
import { DEVNET_DATA_REQUEST_PARAMS } from "../../scripts/lib/deployProtocol.js";
import { MINTED, PARAMS, VARIANT, registerServer, stake, worldFixture, type World } from "./fixtures.js";

const { ethers, networkHelpers } = await network.create();
const world = worldFixture(ethers);
const P = DEVNET_DATA_REQUEST_PARAMS;
const Status = { None: 0n, Open: 1n, Answered: 2n, Slashed: 3n };
const HIDDEN = 40; // not a multiple of the int8 block (32): the last block of each row is short

interface RequestWorld extends World {
  requester: HardhatEthersSigner;
  other: HardhatEthersSigner;
  receipts: Receipt[];
  /** Per receipt: the step's stored input and output (receipt i is step i, encoding ["fp32", "fp16", "int8", "fp32"][i]). */
  data: { input: EncodedActivations; output: EncodedActivations }[];
  tree: MerkleTree;
  batchId: bigint;
}

/** Deterministic (rows, HIDDEN) values, different per seed. */
function values(rows: number, seed: number): Float32Array {
  return Float32Array.from({ length: rows * HIDDEN }, (_, i) => Math.sin(seed * 1000 + i) * 3);
}

/** A server of layers [0, 4) that committed four receipts (a 3-token prefill, then decode steps), and two registered verifiers. */
async function requestWorldFixture(): Promise<RequestWorld> {
  const w = await world();
  const [requester, other] = [w.verifier, (await ethers.getSigners())[7]!];
  await w.token.mint(other.address, MINTED);
  for (const v of [requester, other]) {
    await stake(w, v, PARAMS.stake.verifierMinStake);
    await w.staking.connect(v).registerVerifier();
    await w.token.connect(v).approve(await w.dataRequests.getAddress(), MINTED);
    await w.token.connect(v).approve(await w.disputes.getAddress(), MINTED);
  }
  await registerServer(w, w.server, 0, 4);
  const encodings = ["fp32", "fp16", "int8", "fp32"] as const;
  const data = encodings.map((encoding, step) => {
    const rows = step === 0 ? 3 : 1;
    return { input: encodeActivations(values(rows, 2 * step), rows, HIDDEN, encoding), output: encodeActivations(values(rows, 2 * step + 1), rows, HIDDEN, encoding) };
  });
  const receipts = data.map(({ input, output }, step) => ({
    sessionId: keccak256(toUtf8Bytes("session")),
    step: BigInt(step),
    firstLayer: 0,
    lastLayer: 4,
    variantId: VARIANT,
    inputHash: activationHash(input),
    outputHash: activationHash(output),
    tokens: input.rows,
    server: w.server.address,
  }));
  const tree = new MerkleTree(receipts.map(receiptLeaf));
  await w.commitments.connect(w.server).postBatch(tree.root, VARIANT, 0, 4, receipts.length, 0, 0);
  return { ...w, requester, other, receipts, data, tree, batchId: 0n };
}

function requestOf(w: RequestWorld, by: HardhatEthersSigner, i = 0) {
  return w.dataRequests.connect(by).requestData(w.batchId, w.receipts[i]!, w.tree.proof(i));
}

function answer(w: RequestWorld, id: bigint, i: number, input = w.data[i]!.input, output = w.data[i]!.output, by = w.server) {
  return w.dataRequests.connect(by).postData(id, onChain(input), onChain(output));
}

describe("DataRequests", function () {
  const load = () => networkHelpers.loadFixture(requestWorldFixture);

  it("hashes activations exactly as protocol/activations.ts does, in every encoding", async function () {
    const w = await load();
    for (const { input, output } of w.data) {
      expect(await w.dataRequests.activationHash(onChain(input))).to.equal(activationHash(input));
      expect(await w.dataRequests.activationHash(onChain(output))).to.equal(activationHash(output));
    }
    // rows and cols enter the hash little-endian: a shape whose bytes differ in order gives another hash
    const many = encodeActivations(new Float32Array(258 * 2), 258, 2, "fp16");
    expect(await w.dataRequests.activationHash(onChain(many))).to.equal(activationHash(many));
    expect(await w.dataRequests.payloadBytes(2, 3, 40)).to.equal(3n * (2n * 4n + 40n));
  });

  it("opens a request: locks the server's stake under it, takes the bond, emits DataRequested", async function () {
    const w = await load();
    const before = await w.token.balanceOf(w.requester.address);
    const leaf = receiptLeaf(w.receipts[1]!);
    const at = BigInt(await networkHelpers.time.latest()) + 5n;
    await networkHelpers.time.setNextBlockTimestamp(at);
    await expect(requestOf(w, w.requester, 1))
      .to.emit(w.dataRequests, "DataRequested")
      .withArgs(1n, w.server.address, w.requester.address, 0n, leaf, P.requestBond, P.serverSlash, at + P.responsePeriod);
    const r = await w.dataRequests.request(1n);
    expect([r.requester, r.server, r.batchId, r.receiptLeaf, r.inputHash, r.outputHash, r.bond, r.serverLocked, r.openedAt, r.deadline, r.status]).to.deep.equal([
      w.requester.address, w.server.address, 0n, leaf, w.receipts[1]!.inputHash, w.receipts[1]!.outputHash, P.requestBond, P.serverSlash, at, at + P.responsePeriod, Status.Open,
    ]);
    expect((await w.staking.operator(w.server.address)).locked).to.equal(P.serverSlash);
    expect(await w.token.balanceOf(w.requester.address)).to.equal(before - P.requestBond);
    expect([await w.dataRequests.requestOfReceipt(leaf), await w.dataRequests.requestCount()]).to.deep.equal([1n, 1n]);
  });

  it("accepts the right answer (fp32 prefill, fp16, int8): emits the data, releases the lock, pays the bond to the server", async function () {
    const w = await load();
    for (const i of [0, 1, 2]) {
      await requestOf(w, w.requester, i);
      const id = BigInt(i + 1);
      const serverBefore = await w.token.balanceOf(w.server.address);
      const tx = await answer(w, id, i);
      const posted = (await tx.wait())!.logs.map((l) => w.dataRequests.interface.parseLog(l)).find((e) => e?.name === "DataPosted")!;
      const asTuple = (a: EncodedActivations) => [BigInt(ENCODING_CODE[a.encoding]), BigInt(a.rows), BigInt(a.cols), ethers.hexlify(a.payload)];
      expect([posted.args[0], posted.args[1], posted.args[2], [...posted.args[3]], [...posted.args[4]]]).to.deep.equal([
        id, w.server.address, receiptLeaf(w.receipts[i]!), asTuple(w.data[i]!.input), asTuple(w.data[i]!.output),
      ]);
      expect((await w.dataRequests.request(id)).status).to.equal(Status.Answered);
      expect((await w.staking.operator(w.server.address)).locked).to.equal(0n);
      expect(await w.token.balanceOf(w.server.address)).to.equal(serverBefore + P.requestBond);
    }
    // the answer cannot be slashed, nor answered again; trust did not move
    await networkHelpers.time.increase(P.responsePeriod + 1n);
    await expect(w.dataRequests.slashUnanswered(1n)).to.be.revertedWithCustomError(w.dataRequests, "DataRequestsNotOpen").withArgs(1n, Status.Answered);
    await expect(answer(w, 1n, 0)).to.be.revertedWithCustomError(w.dataRequests, "DataRequestsNotOpen").withArgs(1n, Status.Answered);
    expect((await w.trust.record(w.server.address)).failedAudits).to.equal(0n);
  });

  it("rejects data that does not hash to the receipt: wrong values, another dtype, another shape, a bad length, an unknown encoding", async function () {
    const w = await load();
    await requestOf(w, w.requester, 0);
    const { input, output } = w.data[0]!; // fp32, 3 rows
    const wrongValues = { ...output, payload: Uint8Array.from(output.payload, (b, i) => (i === 7 ? b ^ 1 : b)) };
    await expect(answer(w, 1n, 0, input, wrongValues))
      .to.be.revertedWithCustomError(w.dataRequests, "DataRequestsOutputMismatch")
      .withArgs(activationHash(wrongValues), w.receipts[0]!.outputHash);
    await expect(answer(w, 1n, 0, wrongValues, output))
      .to.be.revertedWithCustomError(w.dataRequests, "DataRequestsInputMismatch")
      .withArgs(activationHash(wrongValues), w.receipts[0]!.inputHash);
    // the same bytes read as fp16 of twice the width: right length, another hash
    const asF16 = { ...input, encoding: "fp16" as const, cols: HIDDEN * 2 };
    await expect(answer(w, 1n, 0, asF16, output))
      .to.be.revertedWithCustomError(w.dataRequests, "DataRequestsInputMismatch")
      .withArgs(activationHash(asF16), w.receipts[0]!.inputHash);
    // the same bytes as 1 row of 3 × HIDDEN: right length, another shape
    const reshaped = { ...input, rows: 1, cols: 3 * HIDDEN };
    await expect(answer(w, 1n, 0, reshaped, output))
      .to.be.revertedWithCustomError(w.dataRequests, "DataRequestsInputMismatch")
      .withArgs(activationHash(reshaped), w.receipts[0]!.inputHash);
    const short = { ...input, payload: input.payload.subarray(4) };
    await expect(answer(w, 1n, 0, short, output))
      .to.be.revertedWithCustomError(w.dataRequests, "DataRequestsBadPayloadLength")
      .withArgs(0n, 3n, BigInt(HIDDEN), BigInt(input.payload.length - 4), BigInt(input.payload.length));
    await expect(w.dataRequests.connect(w.server).postData(1n, { ...onChain(input), encoding: 3 }, onChain(output)))
      .to.be.revertedWithCustomError(w.dataRequests, "DataRequestsBadEncoding")
      .withArgs(3n);
    // someone else holding the data cannot answer for the server (the bond is the server's compensation)
    await expect(answer(w, 1n, 0, input, output, w.other))
      .to.be.revertedWithCustomError(w.dataRequests, "DataRequestsNotServer")
      .withArgs(1n, w.other.address, w.server.address);
    expect((await w.dataRequests.request(1n)).status).to.equal(Status.Open);
  });

  it("refuses a late answer, and a slash before the deadline", async function () {
    const w = await load();
    await requestOf(w, w.requester, 3);
    const { deadline } = await w.dataRequests.request(1n);
    await networkHelpers.time.setNextBlockTimestamp(deadline);
    await expect(w.dataRequests.slashUnanswered(1n))
      .to.be.revertedWithCustomError(w.dataRequests, "DataRequestsNotExpired")
      .withArgs(1n, deadline, deadline);
    await networkHelpers.time.setNextBlockTimestamp(deadline + 1n);
    await expect(answer(w, 1n, 3))
      .to.be.revertedWithCustomError(w.dataRequests, "DataRequestsResponseClosed")
      .withArgs(1n, deadline, deadline + 1n);
  });

  it("slashes an unanswered request: share to the requester, the rest to the pool, a failed audit, the bond back", async function () {
    const w = await load();
    // a response period inside the challenge window, so the receipt could still be requested again
    await w.dataRequests.setParams({ ...P, responsePeriod: 600n });
    await requestOf(w, w.requester, 2);
    await networkHelpers.time.increase(601n);
    const rewardsAddress = await w.rewards.getAddress();
    const [requesterBefore, poolBefore, bonded] = [
      await w.token.balanceOf(w.requester.address),
      await w.token.balanceOf(rewardsAddress),
      (await w.staking.operator(w.server.address)).bonded,
    ];
    const toRequester = (P.serverSlash * P.requesterShareBps) / 10_000n;
    const trustBefore = await w.trust.trustOf(w.server.address);
    // anyone may call it
    await expect(w.dataRequests.connect(w.stranger).slashUnanswered(1n))
      .to.emit(w.dataRequests, "RequestSlashed")
      .withArgs(1n, w.server.address, P.serverSlash, toRequester)
      .and.to.emit(w.trust, "AuditRecorded");
    expect((await w.dataRequests.request(1n)).status).to.equal(Status.Slashed);
    const op = await w.staking.operator(w.server.address);
    expect([op.bonded, op.locked]).to.deep.equal([bonded - P.serverSlash, 0n]);
    expect(await w.token.balanceOf(w.requester.address)).to.equal(requesterBefore + toRequester + P.requestBond);
    expect(await w.token.balanceOf(rewardsAddress)).to.equal(poolBefore + P.serverSlash - toRequester);
    expect((await w.trust.record(w.server.address)).failedAudits).to.equal(1n);
    expect(await w.trust.trustOf(w.server.address)).to.be.lessThan(trustBefore);
    expect(await w.trust.isTrusted(w.server.address)).to.equal(false);
    // slashed once: neither again, nor answerable, nor requestable again, nor unknown ids
    await expect(w.dataRequests.slashUnanswered(1n)).to.be.revertedWithCustomError(w.dataRequests, "DataRequestsNotOpen").withArgs(1n, Status.Slashed);
    await expect(requestOf(w, w.other, 2))
      .to.be.revertedWithCustomError(w.dataRequests, "DataRequestsAlreadyRequested")
      .withArgs(receiptLeaf(w.receipts[2]!), 1n);
    await expect(w.dataRequests.slashUnanswered(2n)).to.be.revertedWithCustomError(w.dataRequests, "DataRequestsUnknown").withArgs(2n);
  });

  it("rejects a second request for one receipt, a non-verifier, a step over maxTokens, a receipt not in the batch, a receipt naming the server under another server's root, a disputed receipt and a closed window", async function () {
    const w = await load();
    await requestOf(w, w.requester, 0);
    await expect(requestOf(w, w.other, 0))
      .to.be.revertedWithCustomError(w.dataRequests, "DataRequestsAlreadyRequested")
      .withArgs(receiptLeaf(w.receipts[0]!), 1n);
    await expect(requestOf(w, w.stranger, 1)).to.be.revertedWithCustomError(w.dataRequests, "DataRequestsNotVerifier").withArgs(w.stranger.address);
    // the 3-token prefill is over a cap of 2 tokens: an honest server could not be made to post it
    await w.dataRequests.setParams({ ...P, maxTokens: 2n });
    await expect(requestOf(w, w.other, 0)).to.be.revertedWithCustomError(w.dataRequests, "DataRequestsStepTooLarge").withArgs(3n, 2n);
    await w.dataRequests.setParams(P);
    const wrong = { ...w.receipts[1]!, outputHash: ZeroHash };
    await expect(w.dataRequests.connect(w.requester).requestData(0, wrong, w.tree.proof(1)))
      .to.be.revertedWithCustomError(w.dataRequests, "ReceiptNotInBatch")
      .withArgs(0n, receiptLeaf(wrong));
    // no signature is asked for: only the server posts its roots, so another server cannot lock its
    // stake by committing a receipt that names it
    await registerServer(w, w.server2, 0, 4);
    const framed = { ...w.receipts[3]!, step: 9n, outputHash: ZeroHash };
    const framing = new MerkleTree([receiptLeaf(framed), receiptLeaf({ ...w.receipts[3]!, server: w.server2.address })]);
    await w.commitments.connect(w.server2).postBatch(framing.root, VARIANT, 0, 4, 2, 0, 0);
    await expect(w.dataRequests.connect(w.requester).requestData(1, framed, framing.proof(0)))
      .to.be.revertedWithCustomError(w.dataRequests, "ReceiptNotInBatch")
      .withArgs(1n, receiptLeaf(framed));
    await w.disputes.connect(w.other).openDispute(0, w.receipts[1]!, w.tree.proof(1));
    await expect(requestOf(w, w.requester, 1))
      .to.be.revertedWithCustomError(w.dataRequests, "DataRequestsReceiptDisputed")
      .withArgs(receiptLeaf(w.receipts[1]!), 1n);
    const deadline = (await w.commitments.batch(0)).challengeDeadline;
    await networkHelpers.time.setNextBlockTimestamp(deadline + 1n);
    await expect(requestOf(w, w.requester, 2))
      .to.be.revertedWithCustomError(w.dataRequests, "ReceiptWindowClosed")
      .withArgs(0n, deadline, deadline + 1n);
  });

  it("one punishment per step: a step slashed as withheld cannot be disputed; an answered or still open request does not stop a dispute", async function () {
    const w = await load();
    await w.dataRequests.setParams({ ...P, responsePeriod: 600n });
    const leaves = w.receipts.map(receiptLeaf);
    await requestOf(w, w.requester, 0); // request 1: answered
    await answer(w, 1n, 0);
    await requestOf(w, w.requester, 1); // request 2: open
    await requestOf(w, w.requester, 2); // request 3: slashed
    expect(await w.dataRequests.slashedRequestOfReceipt(leaves[2]!)).to.equal(0n);
    await networkHelpers.time.increase(601n);
    await w.dataRequests.slashUnanswered(3n);
    expect(await Promise.all(leaves.map((l) => w.dataRequests.slashedRequestOfReceipt(l)))).to.deep.equal([0n, 0n, 3n, 0n]);
    const dispute = (i: number) => w.disputes.connect(w.other).openDispute(w.batchId, w.receipts[i]!, w.tree.proof(i));
    await expect(dispute(2)).to.be.revertedWithCustomError(w.disputes, "DisputesReceiptSlashedAsWithheld").withArgs(leaves[2]!, 3n);
    // the posted data of an answered request may show a wrong step; an open one may still be answered
    await expect(dispute(0)).to.emit(w.disputes, "DisputeOpened");
    await expect(dispute(1)).to.emit(w.disputes, "DisputeOpened");
    expect([await w.disputes.disputeOfReceipt(leaves[0]!), await w.disputes.disputeOfReceipt(leaves[1]!), await w.disputes.disputeOfReceipt(leaves[2]!)]).to.deep.equal([1n, 2n, 0n]);
  });

  it("Disputes refuses every dispute until its DataRequests contract is set, which is set once, by governance only", async function () {
    const w = await load();
    const args = [w.admin.address, w.token, w.staking, w.commitments, w.trust, w.rewards, PARAMS.disputes] as const;
    const fresh = await ethers.deployContract("Disputes", [...args]);
    await expect(fresh.connect(w.requester).openDispute(w.batchId, w.receipts[0]!, w.tree.proof(0)))
      .to.be.revertedWithCustomError(fresh, "DisputesDataRequestsNotSet");
    expect(await fresh.dataRequests()).to.equal(ethers.ZeroAddress);
    await expect(fresh.connect(w.stranger).setDataRequests(w.dataRequests))
      .to.be.revertedWithCustomError(fresh, "AccessControlUnauthorizedAccount")
      .withArgs(w.stranger.address, await fresh.GOVERNANCE_ROLE());
    const address = await w.dataRequests.getAddress();
    await expect(fresh.setDataRequests(address)).to.emit(fresh, "DataRequestsSet").withArgs(address);
    expect(await fresh.dataRequests()).to.equal(address);
    await expect(fresh.setDataRequests(w.stranger.address)).to.be.revertedWithCustomError(fresh, "DisputesDataRequestsAlreadySet").withArgs(address);
    // the deployment wires it (scripts/lib/deployProtocol.ts)
    expect(await w.disputes.dataRequests()).to.equal(address);
  });

  it("refuses when all of the server's stake is already locked", async function () {
    const w = await load();
    const total = (await w.staking.operator(w.server.address)).bonded;
    await w.dataRequests.setParams({ ...P, serverSlash: total });
    await requestOf(w, w.requester, 0);
    await expect(requestOf(w, w.requester, 1)).to.be.revertedWithCustomError(w.dataRequests, "DataRequestsNothingToLock").withArgs(w.server.address);
  });

  it("a server that unbonds cannot escape: the locked stake stays until the request is slashed, long after the window", async function () {
    const w = await load();
    const total = (await w.staking.operator(w.server.address)).bonded;
    await w.staking.connect(w.server).deregister();
    await w.staking.connect(w.server).requestUnbond(total);
    // requested in the last second of the batch's window
    const { challengeDeadline } = await w.commitments.batch(0);
    await networkHelpers.time.setNextBlockTimestamp(challengeDeadline);
    await requestOf(w, w.requester, 3);
    await networkHelpers.time.increaseTo(await w.staking.withdrawableAt(w.server.address));
    const walletBefore = await w.token.balanceOf(w.server.address);
    await w.staking.connect(w.server).withdraw();
    expect(await w.token.balanceOf(w.server.address)).to.equal(walletBefore + total - P.serverSlash);
    const op = await w.staking.operator(w.server.address);
    expect([op.bonded, op.unbonding, op.locked]).to.deep.equal([0n, P.serverSlash, P.serverSlash]);
    await expect(w.staking.connect(w.server).withdraw()).to.be.revertedWithCustomError(w.staking, "StakingStakeLocked");
    await w.dataRequests.slashUnanswered(1n);
    const after = await w.staking.operator(w.server.address);
    expect([after.bonded, after.unbonding, after.locked]).to.deep.equal([0n, 0n, 0n]);
  });

  it("validates its parameters and lets only governance change them", async function () {
    const w = await load();
    const maxDuration = PARAMS.timing.maxDisputeDuration;
    const bad = { ...P, responsePeriod: maxDuration + 1n };
    await expect(w.dataRequests.setParams(bad)).to.be.revertedWithCustomError(w.dataRequests, "DataRequestsBadParams");
    await expect(w.dataRequests.setParams({ ...P, requestBond: 0n })).to.be.revertedWithCustomError(w.dataRequests, "DataRequestsBadParams");
    await expect(w.dataRequests.setParams({ ...P, requesterShareBps: 10_001n })).to.be.revertedWithCustomError(w.dataRequests, "DataRequestsBadParams");
    await expect(w.dataRequests.setParams({ ...P, maxTokens: 0n })).to.be.revertedWithCustomError(w.dataRequests, "DataRequestsBadParams");
    await expect(w.dataRequests.connect(w.stranger).setParams(P)).to.be.revertedWithCustomError(w.dataRequests, "AccessControlUnauthorizedAccount");
    const next = { ...P, requestBond: parseEther("3"), responsePeriod: maxDuration };
    await expect(w.dataRequests.setParams(next)).to.emit(w.dataRequests, "ParamsSet");
    expect((await w.dataRequests.params()).requestBond).to.equal(parseEther("3"));
  });
});
