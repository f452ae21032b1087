import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { JsonRpcProvider, NonceManager, Wallet, parseEther, type Signer } from "ethers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildManifest, writeManifest } from "../../../engine/model/manifest.js";
import type { ModelDirectory } from "../../../engine/model/modelDir.js";
import { Head } from "../../../engine/runtime/head.js";
import { Committer } from "../../../node/chain/committer.js";
import { DataResponder, blockSecondsAgo } from "../../../node/chain/dataResponder.js";
import { AuditState } from "../../../node/verifier/auditState.js";
import { toleranceFor } from "../../../node/verifier/compareOutput.js";
import { VerifierDaemon } from "../../../node/verifier/daemon.js";
import { ReplayShards } from "../../../node/verifier/receiptAudit.js";
import { ensureVerifier } from "../../../node/verifier/registration.js";
import type { Shard } from "../../../engine/runtime/shard.js";
import {
  Commitments__factory,
  DataRequests__factory,
  Disputes__factory,
  EFedToken__factory,
  Staking__factory,
  TrustScores__factory,
} from "../../../types/ethers-contracts/index.js";
import { DEVNET_DATA_REQUEST_PARAMS, DEVNET_PARAMS, deployProtocol, protocolAddresses, type ProtocolAddresses } from "../../../scripts/lib/deployProtocol.js";
import { randomModel, scratchDir } from "../../engine/helpers.js";
import { faultyShard } from "../../../scripts/devnet/faultyShard.js";
import { startHardhatNode, type LocalChain } from "../../support/hardhatNode.js";
import { startServer, type RunningServer } from "../support.js";
import { DEV_KEYS, FULL_BOND, PROMPT, SERVER_STAKE, silent } from "./chainHarness.js";
import { generateOn } from "./harness.js";

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

const scratch = scratchDir();
let chain: LocalChain;
let provider: JsonRpcProvider;
let admin: Signer;
let addresses: ProtocolAddresses;
let model: ModelDirectory;
let variantId: string;
let head: Head;
let replayers: ReplayShards;
const servers: RunningServer[] = [];
const states: AuditState[] = [];

beforeAll(async () => {
  model = randomModel(scratch.dir, "datareq-model", { hidden_size: 64, intermediate_size: 96, max_position_embeddings: 256 });
  variantId = writeManifest(model.dir, buildManifest(model));
  head = await Head.load(model);
  replayers = new ReplayShards(model, variantId, 1);
  chain = await startHardhatNode();
  provider = new JsonRpcProvider(chain.url, undefined, { staticNetwork: true, cacheTimeout: -1 });
  admin = new NonceManager(await provider.getSigner(0));
  const protocol = await deployProtocol(admin, DEVNET_PARAMS);
  addresses = await protocolAddresses(protocol);
  await (await protocol.registry.registerVariant(variantId, 4, "file://datareq-model")).wait();
}, 120_000);

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  for (const s of states) s.close();
  await replayers?.release();
  provider?.destroy();
  await chain?.stop();
  scratch.cleanup();
});

function EFedTokenAt(runner: Signer | JsonRpcProvider) {
  return EFedToken__factory.connect(addresses.token, runner);
}

function contractsFor(signer: Signer) {
  return {
    staking: Staking__factory.connect(addresses.staking, signer),
    commitments: Commitments__factory.connect(addresses.commitments, signer),
    disputes: Disputes__factory.connect(addresses.disputes, signer),
    token: EFedTokenAt(signer),
    dataRequests: DataRequests__factory.connect(addresses.dataRequests, signer),
  };
}

/** A server for all 4 layers, staked and registered under a fresh funded key, that has served one 8-step generation and committed it. */
async function servedAndCommitted(wrap?: (s: Shard) => Shard): Promise<{ running: RunningServer; signer: Signer; batchId: number; sessionId: string }> {
  const staking = Staking__factory.connect(addresses.staking, provider);
  const running = await startServer(model, 0, 4, scratch.dir, {}, variantId, undefined, {}, { isVerifier: (a) => staking.isActiveVerifier(a), commitments: addresses.commitments }, wrap);
  servers.push(running);
  const signer = new NonceManager(running.wallet.connect(provider));
  await (await admin.sendTransaction({ to: running.wallet.address, value: parseEther("10") })).wait();
  await (await EFedTokenAt(admin).mint(running.wallet.address, SERVER_STAKE)).wait();
  const c = contractsFor(signer);
  await (await c.token.approve(addresses.staking, SERVER_STAKE)).wait();
  await (await c.staking.deposit(SERVER_STAKE)).wait();
  await (await c.staking.registerServer(variantId, 0, 4, running.server.url, 0n)).wait();
  await generateOn(head, [running], PROMPT, { maxTokens: 8 });
  const batchId = await new Committer({ commitments: c.commitments, store: running.store, maxReceiptsPerBatch: 1000, logger: silent }).commitOnce();
  expect(batchId).toBeDefined();
  const sessionId = running.store.get(running.store.batchLeaves(batchId!)![0]!)!.receipt.sessionId;
  return { running, signer, batchId: batchId!, sessionId };
}

/**
 * The server stops producing step 3 off chain: the step stays in its store and listed in its batch
 * (looked up by leaf, "03" still reads as step 3) but is no longer found by session and step.
 */
function withholdOffChain(s: RunningServer, sessionId: string): void {
  const db = new DatabaseSync(s.store.path);
  try {
    db.prepare("UPDATE steps SET step = '03' WHERE session_id = ? AND step = ?").run(sessionId, WITHHELD_STEP.toString());
  } finally {
    db.close();
  }
}

/** A daemon for dev account `index` (sample rate 1) with its own state file `name`, registered as a verifier with the bonds it needs, reading from `fromBlock`. */
async function daemonFor(index: number, name: string, fromBlock: number): Promise<{ daemon: VerifierDaemon; address: string }> {
  const wallet = new Wallet(DEV_KEYS[index]!, provider);
  const contracts = contractsFor(new NonceManager(wallet));
  await (await EFedTokenAt(admin).mint(wallet.address, DEVNET_PARAMS.stake.verifierMinStake + FULL_BOND + P.requestBond)).wait();
  await ensureVerifier(contracts, wallet.address, silent);
  const state = AuditState.open(join(scratch.dir, `${name}.sqlite`));
  states.push(state);
  const daemon = new VerifierDaemon({
    key: wallet.signingKey,
    address: wallet.address,
    provider,
    chainId: 31337n,
    contracts,
    replayers,
    state,
    sampleRate: 1,
    tolerance: toleranceFor(model.compression),
    logger: silent,
    fromBlock,
  });
  return { daemon, address: wallet.address };
}

async function mine(): Promise<void> {
  await provider.send("hardhat_mine", ["0x1"]);
}

function readers() {
  return {
    token: EFedTokenAt(provider),
    staking: Staking__factory.connect(addresses.staking, provider),
    disputes: Disputes__factory.connect(addresses.disputes, provider),
    trust: TrustScores__factory.connect(addresses.trust, provider),
    dataRequests: DataRequests__factory.connect(addresses.dataRequests, provider),
  };
}

describe("withheld data on chain", () => {
  it("a server that withholds off chain but answers on chain is audited from the posted data, keeps its stake and is paid the bond", async () => {
    const fromBlock = await provider.getBlockNumber();
    const { daemon, address: verifierAddress } = await daemonFor(0, "answered", fromBlock);
    const s = await servedAndCommitted();
    withholdOffChain(s.running, s.sessionId);
    await mine(); // the block whose hash seeds the sample
    const { token, staking, disputes, trust, dataRequests } = readers();
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
    const responder = new DataResponder({ dataRequests: contractsFor(s.signer).dataRequests, provider, address: s.running.wallet.address, store: s.running.store, logger: silent, fromBlock });
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
  });

  it("posted data that fail the replay are disputed", async () => {
    const fromBlock = await provider.getBlockNumber();
    const { daemon } = await daemonFor(1, "wrong-posted", fromBlock);
    // noisy from step 3 on: the stored step 3 is wrong, and the server withholds it off chain
    const s = await servedAndCommitted((shard) => faultyShard(shard, { kind: "noise", amplitude: 0.5 }, PROMPT.length + 2));
    withholdOffChain(s.running, s.sessionId);
    await mine();
    const first = await daemon.runOnce();
    expect(first).toMatchObject({ audited: 8, failed: 5, challenged: [] });
    const { dataRequests, disputes } = readers();
    const requestId = await dataRequests.requestCount();
    const responder = new DataResponder({ dataRequests: contractsFor(s.signer).dataRequests, provider, address: s.running.wallet.address, store: s.running.store, logger: silent, fromBlock });
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
    const fromBlock = await provider.getBlockNumber();
    const { daemon, address: verifierAddress } = await daemonFor(0, "unanswered", fromBlock);
    const s = await servedAndCommitted();
    withholdOffChain(s.running, s.sessionId);
    await mine();
    const { token, staking, trust, dataRequests } = readers();
    expect(await trust.isTrusted(s.running.wallet.address)).toBe(true);
    await daemon.runOnce();
    const requestId = await dataRequests.requestCount();
    expect((await dataRequests.request(requestId)).server).toBe(s.running.wallet.address);
    const verifierBefore = await token.balanceOf(verifierAddress);

    // not yet past the deadline: nothing to slash
    expect((await daemon.runOnce()).dataRequests).toEqual({ audited: [], slashed: [], disputed: [] });
    await provider.send("evm_increaseTime", [Number(P.responsePeriod) + 1]);
    await mine();
    // a restarted server reads requests from the first block within the response period: here, only the latest
    expect(await blockSecondsAgo(provider, P.responsePeriod)).toBe(await provider.getBlockNumber());
    expect(await blockSecondsAgo(provider, 10n ** 9n)).toBe(0);
    // a responder that starts too late finds the request past its deadline and says so
    const responder = new DataResponder({ dataRequests: contractsFor(s.signer).dataRequests, provider, address: s.running.wallet.address, store: s.running.store, logger: silent, fromBlock });
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
