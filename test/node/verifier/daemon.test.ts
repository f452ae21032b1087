import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { NonceManager, Wallet, parseEther } from "ethers";
import { beforeAll, describe, expect, it } from "vitest";
import { buildManifest, writeManifest } from "../../../engine/model/manifest.js";
import { chainCall } from "../../../node/verifier/chainErrors.js";
import { type RoundSummary } from "../../../node/verifier/daemon.js";
import { ensureVerifier } from "../../../node/verifier/registration.js";
import { MerkleTree } from "../../../protocol/merkle.js";
import { AuditLedger__factory, Staking__factory, TrustScores__factory } from "../../../types/ethers-contracts/index.js";
import { DEVNET_PARAMS } from "../../../scripts/lib/deployProtocol.js";
import { randomModel } from "../../engine/helpers.js";
import { faultyShard } from "../../../scripts/devnet/faultyShard.js";
import { EFED_BIN, runEfed, stopProcess } from "../../support/efedProcess.js";
import { DEV_KEYS, FAULT_FROM, FULL_BOND, SERVER_STAKE, silent, useVerifierChain, type StakedServer, type VerifierChain } from "./chainHarness.js";

/**
 * The verifier daemon on a real Hardhat node: an honest server and one that adds noise from its
 * third decode step on each serve a generation and commit their receipts; the daemon (sample rate 1)
 * audits every receipt, challenges only the cheater, three more daemons (sample rate 0) sit on the
 * committee, re-execute and vote, the dispute settles: the cheater is slashed and its trust falls,
 * the challenger is paid. Rounds are driven with runOnce() and time with evm_increaseTime.
 */

const children: ChildProcess[] = [];
const env = useVerifierChain("daemon-model", () => Promise.all(children.map((c) => stopProcess(c))), { auditLedger: true });
let net: VerifierChain;
beforeAll(() => (net = env.net));

/** Serves one 8-step generation on `s` and posts its receipts in one batch; returns the batch id. */
async function serveAndCommit(s: StakedServer): Promise<number> {
  return (await net.serveAndCommit([s]))[0]!;
}

const roundOf = (r: RoundSummary) => ({ ...r });

describe("efed verifier daemon on a chain", () => {
  it("refuses to register a verifier without the tokens for its stake, naming the balance", async () => {
    const broke = new NonceManager(new Wallet(DEV_KEYS[4]!, net.provider));
    await expect(ensureVerifier(net.contractsFor(broke), await broke.getAddress(), silent)).rejects.toThrow(
      `${await broke.getAddress()} holds 0.0 tokens, the stake needs 500.0`,
    );
  });

  it("decodes a reverted call to its custom error's name and arguments", async () => {
    const stranger = new NonceManager(new Wallet(DEV_KEYS[4]!, net.provider));
    const receipt = { sessionId: net.variantId, step: 0n, firstLayer: 0, lastLayer: 4, variantId: net.variantId, inputHash: net.variantId, outputHash: net.variantId, tokens: 1, server: await stranger.getAddress() };
    const err = await chainCall("opening a dispute", () => net.contractsFor(stranger).disputes.openDispute.staticCall(1n, receipt, [])).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "CHAIN_CALL_FAILED", errorName: "DisputesNotVerifier", message: `opening a dispute failed: DisputesNotVerifier: ${await stranger.getAddress()} is not an active verifier` });
  });

  it("audits every receipt, records and is rewarded for the passes, challenges only the cheater, the committee votes, the cheater is slashed and the challenger paid", async () => {
    const honest = await net.stakedServer();
    const paid = parseEther("1000"); // what clients paid the honest server: its audit budget is 5 % of it
    await (await TrustScores__factory.connect(net.addresses.trust, net.admin).recordPayment(honest.running.wallet.address, paid)).wait();
    const cheater = await net.stakedServer({ wrap: (shard) => faultyShard(shard, { kind: "noise", amplitude: 0.5 }, FAULT_FROM) });
    const { challenger } = await net.crew();
    const honestBatch = await serveAndCommit(honest);
    const cheaterBatch = await serveAndCommit(cheater);
    await net.mine(); // the block whose hash seeds the sample
    const { token, staking, disputes, trust, rewards, auditLedger } = net.readers();
    const challengerAddress = new Wallet(DEV_KEYS[0]!).address;
    const balanceBefore = await token.balanceOf(challengerAddress);
    expect(await trust.trustOf(cheater.running.wallet.address)).toBe(parseEther("0.5"));

    // round 1: 16 receipts audited (8 each), the cheater's steps 3..7 fail, one dispute for its session;
    // the 8 + 3 passes are recorded on chain, one transaction per batch; only the paid server's earn
    const first = await challenger.runOnce();
    const reward = DEVNET_PARAMS.audits.rewardPerAudit;
    expect(roundOf(first)).toMatchObject({ batches: 2, audited: 16, failed: 5, challenged: [1n], passesRecorded: 11, rewardEarned: 8n * reward });
    const state = net.states[0]!;
    const honestLeaves = honest.running.store.batchLeaves(honestBatch)!;
    expect(honestLeaves.map((leaf) => state.audit(leaf)?.verdict)).toEqual(Array.from({ length: 8 }, () => "pass"));
    const recorded = await auditLedger.queryFilter(auditLedger.filters.PassesRecorded(), 0);
    expect(recorded.map((e) => [e.args.batchId, e.args.verifier, e.args.server, e.args.leaves.length, e.args.credited, e.args.reward])).toEqual([
      [BigInt(honestBatch), challengerAddress, honest.running.wallet.address, 8, 8n, 8n * reward],
      [BigInt(cheaterBatch), challengerAddress, cheater.running.wallet.address, 3, 3n, 0n],
    ]);
    expect([...recorded[0]!.args.leaves].sort()).toEqual([...honestLeaves].sort());
    expect(await rewards.owed(challengerAddress)).toBe(8n * reward);
    expect(state.passesRecorded(BigInt(honestBatch))).toEqual({ passes: 8, reward: 8n * reward });
    const d = await disputes.dispute(1n);
    expect([d.server, d.challenger, d.batchId]).toEqual([cheater.running.wallet.address, challengerAddress, BigInt(cheaterBatch)]);
    expect(state.audit(d.receiptLeaf)).toMatchObject({ verdict: "fail", reason: expect.stringMatching(/^step 3 of session 0x[0-9a-f]{64}: output: output differs from the recomputation/) as string });
    expect(await disputes.disputeCount()).toBe(1n);

    // the committee (everyone but the challenger) re-executes, votes "at fault", restarts, reveals, and the dispute settles
    const { committee, commits, reveals } = await net.runCommittee(1n, true);
    expect([...committee].sort()).toEqual(DEV_KEYS.slice(1, 4).map((k) => new Wallet(k).address).sort());
    expect(commits).toEqual([[1n], [1n], [1n]]);
    expect(reveals.map((r) => r.revealed)).toEqual([[1n], [1n], [1n]]);
    expect(reveals[2]!.settled).toEqual([1n]); // the last reveal makes it settleable at once

    const settled = await disputes.dispute(1n);
    expect([settled.status, settled.outcome, settled.faultVotes, settled.correctVotes]).toEqual([3n, 1n, 3n, 0n]);
    const slash = DEVNET_PARAMS.disputes.serverSlash;
    const toChallenger = (slash * DEVNET_PARAMS.disputes.challengerShareBps) / 10_000n;
    expect((await staking.operator(cheater.running.wallet.address)).bonded).toBe(SERVER_STAKE - slash);
    expect(await token.balanceOf(challengerAddress)).toBe(balanceBefore + toChallenger); // the bond came back too
    // 3 passed audits, 1 failed: (1 + 3) / (1 + 3 + 1 + 10·1), halved
    const afterOneFailure = (((parseEther("4") * 10n ** 18n) / parseEther("15")) * parseEther("0.5")) / 10n ** 18n;
    expect(await trust.trustOf(cheater.running.wallet.address)).toBe(afterOneFailure);
    expect(await trust.isTrusted(cheater.running.wallet.address)).toBe(false);
    // the honest server: never challenged, its stake untouched, its trust up by 8 passed audits and 1 credit of paid work
    expect((await staking.operator(honest.running.wallet.address)).bonded).toBe(SERVER_STAKE);
    expect(await trust.trustOf(honest.running.wallet.address)).toBe((parseEther("10") * 10n ** 18n) / parseEther("11"));

    // the challenger notes the settlement; a restarted daemon on the same state audits nothing again
    expect((await challenger.runOnce()).audited).toBe(0);
    const restarted = await net.daemonFor(0, 1, state.path);
    const again = await restarted.runOnce();
    expect(roundOf(again)).toMatchObject({ batches: 0, audited: 0, challenged: [], passesRecorded: 0, settled: [] });
    expect(net.states[0]!.auditCounts()).toEqual({ pass: 11, fail: 5, withheld: 0 });
  });
});

describe("efed verifier daemon against a withholding server", () => {
  it("challenges a server that lists a committed step but will not produce it, and the committee finds it at fault", async () => {
    const { challenger } = await net.crew();
    const withholder = await net.stakedServer();
    const batchId = await serveAndCommit(withholder);
    const leaves = withholder.running.store.batchLeaves(batchId)!;
    const sessionId = withholder.running.store.get(leaves[0]!)!.receipt.sessionId;
    // step 3 stays listed in its batch (looked up by leaf, its receipt unchanged: "03" reads as step 3)
    // but is no longer found by session and step (looked up as the text "3"): served to no audit
    const db = new DatabaseSync(withholder.running.store.path);
    db.prepare("UPDATE steps SET step = '03' WHERE session_id = ? AND step = '3'").run(sessionId);
    db.close();
    await net.mine();

    const round = await challenger.runOnce();
    expect(roundOf(round)).toMatchObject({ batches: 1, audited: 8, failed: 5 });
    expect(round.challenged.length).toBe(1);
    const disputeId = round.challenged[0]!;
    const { disputes, staking } = net.readers();
    const d = await disputes.dispute(disputeId);
    expect([d.server, d.batchId]).toEqual([withholder.running.wallet.address, BigInt(batchId)]);
    expect(net.states[0]!.audit(d.receiptLeaf)).toMatchObject({
      verdict: "withheld",
      reason: expect.stringContaining(`step 3 of session ${sessionId}: withheld: SERVER_19:`) as string,
    });

    const { reveals } = await net.runCommittee(disputeId);
    expect(reveals[2]!.settled).toEqual([disputeId]);
    const settled = await disputes.dispute(disputeId);
    expect([settled.outcome, settled.faultVotes, settled.correctVotes]).toEqual([1n, 3n, 0n]);
    expect((await staking.operator(withholder.running.wallet.address)).bonded).toBe(SERVER_STAKE - DEVNET_PARAMS.disputes.serverSlash);
  });
});

describe("efed verifier daemon against a lazy verifier", () => {
  it("as the challenger, slashes a pass another verifier recorded for the receipt its dispute found at fault", async () => {
    const { challenger } = await net.crew();
    const cheater = await net.stakedServer({ wrap: (shard) => faultyShard(shard, { kind: "noise", amplitude: 0.5 }, FAULT_FROM) });
    const batchId = await serveAndCommit(cheater);
    await net.mine();
    // a lazy verifier passes every receipt of the batch without re-executing any, then leaves the
    // verifier set (its stake stays slashable; it just sits on no committee here)
    const lazy = new NonceManager(Wallet.createRandom().connect(net.provider));
    const lazyAddress = await lazy.getAddress();
    await (await net.admin.sendTransaction({ to: lazyAddress, value: parseEther("1") })).wait();
    await net.mint(lazyAddress, DEVNET_PARAMS.stake.verifierMinStake);
    await ensureVerifier(net.contractsFor(lazy), lazyAddress, silent);
    const leaves = cheater.running.store.batchLeaves(batchId)!;
    const tree = new MerkleTree(leaves);
    const order = leaves.map((_, i) => i).sort((a, b) => (BigInt(leaves[a]!) < BigInt(leaves[b]!) ? -1 : 1));
    await (await AuditLedger__factory.connect(net.addresses.auditLedger, lazy).recordPasses(batchId, order.map((i) => leaves[i]!), order.map((i) => tree.proof(i)))).wait();
    await (await net.contractsFor(lazy).staking.deregister()).wait();

    const round = await challenger.runOnce();
    expect(round.challenged.length).toBe(1);
    const disputeId = round.challenged[0]!;
    const { disputes, staking, token, auditLedger } = net.readers();
    const leaf = (await disputes.dispute(disputeId)).receiptLeaf;
    const { reveals } = await net.runCommittee(disputeId);
    expect(reveals[2]!.settled).toEqual([disputeId]);
    expect((await disputes.dispute(disputeId)).outcome).toBe(1n);

    // the challenger's next round notes the settlement and slashes the lazy pass, taking its share
    const challengerAddress = new Wallet(DEV_KEYS[0]!).address;
    const before = await token.balanceOf(challengerAddress);
    await challenger.runOnce();
    const penalty = DEVNET_PARAMS.audits.falsePassPenalty;
    expect(await auditLedger.falsePassSlashed(lazyAddress, leaf)).toBe(true);
    expect((await staking.operator(lazyAddress)).bonded).toBe(DEVNET_PARAMS.stake.verifierMinStake - penalty);
    expect(await token.balanceOf(challengerAddress)).toBe(before + (penalty * DEVNET_PARAMS.audits.exposerShareBps) / 10_000n);
    // only the disputed receipt's pass is shown false: the others stand
    expect(await auditLedger.falsePassSlashed(lazyAddress, leaves.find((l) => l !== leaf)!)).toBe(false);
  });
});

describe("efed verifier daemon without the bond", () => {
  it("records the failed audit, and challenges in a later round once it holds the bond", async () => {
    const cheater = await net.stakedServer({ wrap: (shard) => faultyShard(shard, { kind: "skip" }, FAULT_FROM) });
    const fromBlock = await net.provider.getBlockNumber();
    // dev account #5: staked with exactly the minimum, nothing left for a bond
    const poor = await net.daemonFor(4, 1, join(env.scratch, "verifier-poor.sqlite"), fromBlock, 0n);
    const batchId = await serveAndCommit(cheater);
    await net.mine();
    const first = await poor.runOnce();
    expect(roundOf(first)).toMatchObject({ batches: 1, audited: 8, failed: 5, challenged: [] });
    const { disputes } = net.readers();
    const disputesBefore = await disputes.disputeCount();

    await net.mint(new Wallet(DEV_KEYS[4]!).address, FULL_BOND);
    const second = await poor.runOnce();
    expect(roundOf(second)).toMatchObject({ batches: 1, audited: 0, failed: 0, challenged: [disputesBefore + 1n] });
    const d = await disputes.dispute(disputesBefore + 1n);
    expect([d.server, d.batchId]).toEqual([cheater.running.wallet.address, BigInt(batchId)]);
    expect(await poor.runOnce()).toMatchObject({ batches: 0, challenged: [] });
  });
});

describe("efed verifier (the command)", () => {
  /** A deployment file for the command, a fresh funded key file, and the flags every run needs. */
  async function commandSetup(name: string, tokens: bigint): Promise<{ args: string[]; address: string; state: string }> {
    const deployment = join(env.scratch, "31337.json");
    writeFileSync(deployment, JSON.stringify({ chainId: "31337", contracts: net.addresses }));
    const wallet = Wallet.createRandom();
    const keyFile = join(env.scratch, `${name}.key`);
    writeFileSync(keyFile, wallet.privateKey);
    await (await net.admin.sendTransaction({ to: wallet.address, value: parseEther("1") })).wait();
    if (tokens > 0n) await net.mint(wallet.address, tokens);
    const state = join(env.scratch, `${name}.sqlite`);
    return { args: ["verifier", "--rpc", net.chain.url, "--deployment", deployment, "--key", keyFile, "--model", net.model.dir, "--state", state], address: wallet.address, state };
  }

  it("refuses a sample rate outside [0, 1], a stake that is not an amount, and a model whose variant is not registered", async () => {
    const { args } = await commandSetup("cli-refused", 0n);
    const rate = await runEfed(...args, "--sample-rate", "1.5");
    expect(rate.code).toBe(1);
    expect(rate.stderr).toContain(`"1.5" is not a probability in [0, 1].`);
    const stake = await runEfed(...args, "--stake", "lots");
    expect(stake.code).toBe(1);
    expect(stake.stderr).toContain(`"lots" is not an amount of tokens (e.g. 500 or 0.5).`);
    const other = randomModel(env.scratch, "daemon-unregistered", { hidden_size: 64, intermediate_size: 96, max_position_embeddings: 256 }, { seed: 11 });
    const otherId = writeManifest(other.dir, buildManifest(other));
    const unregistered = await runEfed(...args.map((a) => (a === net.model.dir ? other.dir : a)));
    expect(unregistered.code).toBe(1);
    expect(unregistered.stderr).toContain(`variant ${otherId} of ${other.dir} is not registered (or is retired) on chain 31337`);
  });

  it("stakes and registers as a verifier, runs rounds with a progress line, and stops on SIGTERM", async () => {
    const { args, address, state } = await commandSetup("cli-run", DEVNET_PARAMS.stake.verifierMinStake);
    const child = spawn(process.execPath, [EFED_BIN, ...args, "--sample-rate", "0", "--poll-ms", "100"], {
      env: { ...process.env, EFED_LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    let out = "";
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes('"msg":"progress: block ')) resolve();
      });
      child.once("exit", (code) => reject(new Error(`efed verifier exited with ${code}: ${err}`)));
    });
    expect(out).toContain(`"address":"${address}","msg":"registered as a verifier"`);
    expect(await Staking__factory.connect(net.addresses.staking, net.provider).isActiveVerifier(address)).toBe(true);
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(existsSync(state)).toBe(true);
  });
});
