import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { Wallet, parseEther } from "ethers";
import { beforeAll, describe, expect, it } from "vitest";
import type { Shard } from "../../../engine/runtime/shard.js";
import { DataResponder, blockSecondsAgo } from "../../../node/chain/dataResponder.js";
import type { VerifierDaemon } from "../../../node/verifier/daemon.js";
import { DataRequests__factory } from "../../../types/ethers-contracts/index.js";
import { DEVNET_DATA_REQUEST_PARAMS } from "../../../scripts/lib/deployProtocol.js";
import { faultyShard } from "../../../scripts/devnet/faultyShard.js";
import { DEV_KEYS, FULL_BOND, PROMPT, SERVER_STAKE, silent, useVerifierChain, type StakedServer, type VerifierChain } from "./chainHarness.js";

/**
 * Withheld data on chain, end to end on a Hardhat node: a server lists its committed receipts but
 * will not produce step 3 of its session when the verifier fetches it. The verifier daemon (sample
 * rate 1) requests the step on chain through DataRequests instead of disputing it. A server whose
 * DataResponder answers from its store is audited from the posted data (and passes, or is disputed
 * when the posted step is wrong); one that never answers is slashed once the deadline passes, and its
 * trust falls below θ.
 */
const WITHHELD_STEP = 3n;
const P = DEVNET_DATA_REQUEST_PARAMS;

const env = useVerifierChain("datareq-model", undefined, { dataRequests: true });
let net: VerifierChain;
beforeAll(() => (net = env.net));

/** A server for all 4 layers, staked and registered under a fresh funded key, that has served one 8-step generation and committed it. */
async function servedAndCommitted(wrap?: (s: Shard) => Shard): Promise<StakedServer & { batchId: number; sessionId: string }> {
  const s = await net.stakedServer(wrap === undefined ? {} : { wrap });
  const [batchId] = await net.serveAndCommit([s]);
  const sessionId = s.running.store.get(s.running.store.batchLeaves(batchId!)![0]!)!.receipt.sessionId;
  return { ...s, batchId: batchId!, sessionId };
}

/**
 * The server stops producing step 3 off chain: the step stays in its store and listed in its batch
 * (looked up by leaf, "03" still reads as step 3) but is no longer found by session and step.
 */
function withholdOffChain(s: StakedServer["running"], sessionId: string): void {
  const db = new DatabaseSync(s.store.path);
  try {
    db.prepare("UPDATE steps SET step = '03' WHERE session_id = ? AND step = ?").run(sessionId, WITHHELD_STEP.toString());
  } finally {
    db.close();
  }
}

/** A daemon for dev account `index` (sample rate 1) with its own state file `name`, registered as a verifier with the bonds it needs, reading from `fromBlock`. */
async function daemonFor(index: number, name: string, fromBlock: number): Promise<{ daemon: VerifierDaemon; address: string }> {
  const daemon = await net.daemonFor(index, 1, join(env.scratch, `${name}.sqlite`), fromBlock, FULL_BOND + P.requestBond);
  return { daemon, address: new Wallet(DEV_KEYS[index]!).address };
}

describe("withheld data on chain", () => {
  it("a server that withholds off chain but answers on chain is audited from the posted data, keeps its stake and is paid the bond", async () => {
    const fromBlock = await net.provider.getBlockNumber();
    const { daemon, address: verifierAddress } = await daemonFor(0, "answered", fromBlock);
    const s = await servedAndCommitted();
    withholdOffChain(s.running, s.sessionId);
    await net.mine(); // the block whose hash seeds the sample
    const { token, staking, disputes, trust, dataRequests } = net.readers();
    const verifierBefore = await token.balanceOf(verifierAddress);

    // round 1: steps 0..2 pass, 3..7 are withheld; the earliest withheld receipt is requested on chain, not disputed
    const first = await daemon.runOnce();
    expect(first).toMatchObject({ batches: 1, audited: 8, failed: 5, challenged: [] });
    expect(first.dataRequests).toEqual({ audited: [], slashed: [], disputed: [] });
    const requestId = await dataRequests.requestCount();
    const request = await dataRequests.request(requestId);
    const leaf = request.receiptLeaf;
    expect(s.running.store.get(leaf)!.receipt.step).toBe(WITHHELD_STEP);
    expect([request.server, request.requester, request.status]).toEqual([s.running.wallet.address, verifierAddress, 1n]);
    expect((await staking.operator(s.running.wallet.address)).locked).toBe(P.serverSlash);
    expect(await token.balanceOf(verifierAddress)).toBe(verifierBefore - P.requestBond);

    // the server's responder answers from its store
    const responder = new DataResponder({ dataRequests: DataRequests__factory.connect(net.addresses.dataRequests, s.signer), provider: net.provider, address: s.running.wallet.address, store: s.running.store, logger: silent, fromBlock });
    const serverTokens = await token.balanceOf(s.running.wallet.address);
    expect(await responder.runOnce()).toEqual({ answered: [requestId], failed: [], abandoned: [] });
    expect((await dataRequests.request(requestId)).status).toBe(2n);
    expect(await token.balanceOf(s.running.wallet.address)).toBe(serverTokens + P.requestBond);
    expect((await staking.operator(s.running.wallet.address)).locked).toBe(0n);
    expect(await responder.runOnce()).toEqual({ answered: [], failed: [], abandoned: [] }); // nothing left to answer

    // round 2: the verifier replays the session with the posted step 3 in place of the withheld one: pass
    const second = await daemon.runOnce();
    expect(second.dataRequests).toMatchObject({ slashed: [], disputed: [] });
    expect(second.dataRequests!.audited).toEqual([
      { requestId, audit: { leaf, verdict: "pass", reason: expect.stringMatching(new RegExp(`^step 3 of session ${s.sessionId} matches the replay`)) as string } },
    ]);
    expect(await disputes.disputeOfReceipt(leaf)).toBe(0n);
    expect((await trust.record(s.running.wallet.address)).failedAudits).toBe(0n);
    expect((await staking.operator(s.running.wallet.address)).bonded).toBe(SERVER_STAKE);
    expect((await daemon.runOnce()).dataRequests).toEqual({ audited: [], slashed: [], disputed: [] }); // audited once

    // restarted (same account and state file), the verifier reads its request back from the chain; the
    // receipt's signature, which requestData does not take, comes from the server's listing of the batch
    const { daemon: restarted } = await daemonFor(0, "answered", fromBlock);
    expect((await restarted.runOnce()).dataRequests).toEqual({
      audited: [{ requestId, audit: { leaf, verdict: "pass", reason: expect.stringMatching(new RegExp(`^step 3 of session ${s.sessionId} matches the replay`)) as string } }],
      slashed: [],
      disputed: [],
    });
    expect(await disputes.disputeOfReceipt(leaf)).toBe(0n);
  });

  it("posted data that fail the replay are disputed", async () => {
    const fromBlock = await net.provider.getBlockNumber();
    const { daemon } = await daemonFor(1, "wrong-posted", fromBlock);
    // noisy from step 3 on: the stored step 3 is wrong, and the server withholds it off chain
    const s = await servedAndCommitted((shard) => faultyShard(shard, { kind: "noise", amplitude: 0.5 }, PROMPT.length + 2));
    withholdOffChain(s.running, s.sessionId);
    await net.mine();
    const first = await daemon.runOnce();
    expect(first).toMatchObject({ audited: 8, failed: 5, challenged: [] });
    const { dataRequests, disputes } = net.readers();
    const requestId = await dataRequests.requestCount();
    const responder = new DataResponder({ dataRequests: DataRequests__factory.connect(net.addresses.dataRequests, s.signer), provider: net.provider, address: s.running.wallet.address, store: s.running.store, logger: silent, fromBlock });
    expect((await responder.runOnce()).answered).toEqual([requestId]);
    const second = await daemon.runOnce();
    const leaf = (await dataRequests.request(requestId)).receiptLeaf;
    expect(second.dataRequests!.audited).toEqual([
      { requestId, audit: { leaf, verdict: "fail", reason: expect.stringContaining("step 3 of session") as string } },
    ]);
    const disputeId = await disputes.disputeOfReceipt(leaf);
    expect(second.dataRequests!.disputed).toEqual([disputeId]);
    expect(disputeId).not.toBe(0n);
    expect((await disputes.dispute(disputeId)).server).toBe(s.running.wallet.address);
  });

  it("a server that never answers is slashed once the deadline passes, and its trust falls below θ", async () => {
    const fromBlock = await net.provider.getBlockNumber();
    const { daemon, address: verifierAddress } = await daemonFor(0, "unanswered", fromBlock);
    const s = await servedAndCommitted();
    withholdOffChain(s.running, s.sessionId);
    await net.mine();
    const { token, staking, trust, dataRequests } = net.readers();
    expect(await trust.isTrusted(s.running.wallet.address)).toBe(true);
    await daemon.runOnce();
    const requestId = await dataRequests.requestCount();
    expect((await dataRequests.request(requestId)).server).toBe(s.running.wallet.address);
    const verifierBefore = await token.balanceOf(verifierAddress);

    // not yet past the deadline: nothing to slash
    expect((await daemon.runOnce()).dataRequests).toEqual({ audited: [], slashed: [], disputed: [] });
    await net.provider.send("evm_increaseTime", [Number(P.responsePeriod) + 1]);
    await net.mine();
    // a restarted server reads requests from the first block within the response period: here, only the latest
    expect(await blockSecondsAgo(net.provider, P.responsePeriod)).toBe(await net.provider.getBlockNumber());
    expect(await blockSecondsAgo(net.provider, 10n ** 9n)).toBe(0);
    // a responder that starts too late finds the request past its deadline and says so
    const responder = new DataResponder({ dataRequests: DataRequests__factory.connect(net.addresses.dataRequests, s.signer), provider: net.provider, address: s.running.wallet.address, store: s.running.store, logger: silent, fromBlock });
    expect(await responder.runOnce()).toEqual({ answered: [], failed: [], abandoned: [requestId] });
    const late = await daemon.runOnce();
    expect(late.dataRequests).toEqual({ audited: [], slashed: [requestId], disputed: [] });
    expect((await dataRequests.request(requestId)).status).toBe(3n);
    const toRequester = (P.serverSlash * P.requesterShareBps) / 10_000n;
    expect(await token.balanceOf(verifierAddress)).toBe(verifierBefore + toRequester + P.requestBond);
    const op = await staking.operator(s.running.wallet.address);
    expect([op.bonded, op.locked]).toEqual([SERVER_STAKE - P.serverSlash, 0n]);
    expect((await trust.record(s.running.wallet.address)).failedAudits).toBe(1n);
    const afterOneFailure = (((parseEther("1") * 10n ** 18n) / parseEther("12")) * parseEther("0.5")) / 10n ** 18n;
    expect(await trust.trustOf(s.running.wallet.address)).toBe(afterOneFailure);
    expect(await trust.isTrusted(s.running.wallet.address)).toBe(false);

  });
});
