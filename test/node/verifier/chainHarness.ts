import { join } from "node:path";
import { JsonRpcProvider, NonceManager, Wallet, parseEther, type Signer } from "ethers";
import { pino } from "pino";
import { afterAll, beforeAll } from "vitest";
import { buildManifest, writeManifest } from "../../../engine/model/manifest.js";
import type { ModelDirectory } from "../../../engine/model/modelDir.js";
import { Head } from "../../../engine/runtime/head.js";
import type { Shard } from "../../../engine/runtime/shard.js";
import { Committer } from "../../../node/chain/committer.js";
import { AuditState } from "../../../node/verifier/auditState.js";
import { toleranceFor } from "../../../node/verifier/compareOutput.js";
import { VerifierDaemon, type RoundSummary } from "../../../node/verifier/daemon.js";
import { ReplayShards } from "../../../node/verifier/receiptAudit.js";
import { ensureVerifier } from "../../../node/verifier/registration.js";
import {
  AuditLedger__factory,
  Commitments__factory,
  DataRequests__factory,
  Disputes__factory,
  EFedToken__factory,
  Staking__factory,
  TrustScores__factory,
  VerifierRewards__factory,
} from "../../../types/ethers-contracts/index.js";
import { DEVNET_PARAMS, deployProtocol, protocolAddresses, type ProtocolAddresses } from "../../../scripts/lib/deployProtocol.js";
import { randomModel, scratchDir } from "../../engine/helpers.js";
import { startHardhatNode, type LocalChain } from "../../support/hardhatNode.js";
import { startServer, type RunningServer } from "../support.js";
import { generateOn } from "./harness.js";

/**
 * One Hardhat node with the protocol deployed, one registered 4-layer model variant, and verifier
 * daemons on dev accounts, for tests that run audits and disputes through the chain. Rounds are
 * driven with runOnce() and time with evm_increaseTime: nothing waits on a clock.
 */
// Hardhat's well-known development accounts #1..#5 (public test keys, funded only on local nodes).
export const DEV_KEYS = [
  "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
  "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
  "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
  "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
  "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
];
export const PROMPT = [5, 17, 3, 60, 41];
/** Session position of decode step 3: steps 0..2 are served honestly, a faulty server cheats from step 3 on. */
export const FAULT_FROM = PROMPT.length + 2;
export const SERVER_STAKE = parseEther("2000");
/** The bond of a dispute that locks a full serverSlash (100 + lockBondBps of it; the servers here stake more than that). */
export const FULL_BOND = DEVNET_PARAMS.disputes.challengeBond + (DEVNET_PARAMS.disputes.serverSlash * DEVNET_PARAMS.disputes.lockBondBps) / 10_000n;
export const silent = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

/** What the daemons of a chain take part in beyond audits and disputes. */
export interface ChainOptions {
  /**
   * Daemons get AuditLedger and record their passes on chain. The chain then samples every receipt
   * (as a challenger of sample rate 1 audits every one), the admin stands in for redeemed channels
   * (TrustScores PAYMENTS_ROLE: paid work unlocks pass rewards) and the reward pool holds 1,000 tokens.
   * Default false: passes stay in the daemons' local state.
   */
  auditLedger?: boolean;
  /** Daemons get DataRequests: a withheld step small enough is requested on chain, not disputed. Default false. */
  dataRequests?: boolean;
}

export interface StakedServer {
  running: RunningServer;
  signer: Signer;
}

export interface Crew {
  /** Dev account #1, sample rate 1: audits every receipt and challenges. */
  challenger: VerifierDaemon;
  /** Dev accounts #2..#4, sample rate 0: committee duty only. */
  members: VerifierDaemon[];
}

export class VerifierChain {
  readonly servers: RunningServer[] = [];
  /** Every daemon's audit state, in the order the daemons were made (the crew's are [0..3]). */
  readonly states: AuditState[] = [];
  private crewOnce: Promise<Crew> | undefined;

  private constructor(
    readonly chain: LocalChain,
    readonly provider: JsonRpcProvider,
    readonly admin: Signer,
    readonly addresses: ProtocolAddresses,
    readonly model: ModelDirectory,
    readonly variantId: string,
    readonly head: Head,
    readonly replayers: ReplayShards,
    private readonly scratch: string,
    private readonly options: ChainOptions,
  ) {}

  /** Writes a random 4-layer model `name` under `scratch`, starts a node, deploys, registers the model's variant. */
  static async start(scratch: string, name: string, options: ChainOptions = {}): Promise<VerifierChain> {
    const model = randomModel(scratch, name, { hidden_size: 64, intermediate_size: 96, max_position_embeddings: 256 });
    const variantId = writeManifest(model.dir, buildManifest(model));
    const head = await Head.load(model);
    const replayers = new ReplayShards(model, variantId, 1);
    const chain = await startHardhatNode();
    // no cached block numbers: a round right after a mine must see it
    const provider = new JsonRpcProvider(chain.url, undefined, { staticNetwork: true, cacheTimeout: -1 });
    const admin = new NonceManager(await provider.getSigner(0));
    const protocol = await deployProtocol(admin, DEVNET_PARAMS);
    const addresses = await protocolAddresses(protocol);
    await (await protocol.registry.registerVariant(variantId, model.config.numLayers, `file://${name}`)).wait();
    if (options.auditLedger === true) {
      await (await protocol.auditLedger.setParams({ ...DEVNET_PARAMS.audits, sampleRatePpb: 1_000_000_000n })).wait();
      await (await protocol.trust.grantRole(await protocol.trust.PAYMENTS_ROLE(), await admin.getAddress())).wait();
      await (await protocol.token.mint(addresses.rewards, parseEther("1000"))).wait();
    }
    return new VerifierChain(chain, provider, admin, addresses, model, variantId, head, replayers, scratch, options);
  }

  /** Stops every server, closes every state, releases the replayers and stops the node. */
  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.stop()));
    for (const s of this.states) s.close();
    await this.replayers.release();
    this.provider.destroy();
    await this.chain.stop();
  }

  /** The contracts a daemon of `signer` is given: AuditLedger and DataRequests as the chain's options say. */
  contractsFor(signer: Signer) {
    const a = this.addresses;
    return {
      staking: Staking__factory.connect(a.staking, signer),
      commitments: Commitments__factory.connect(a.commitments, signer),
      disputes: Disputes__factory.connect(a.disputes, signer),
      token: EFedToken__factory.connect(a.token, signer),
      ...(this.options.auditLedger === true ? { auditLedger: AuditLedger__factory.connect(a.auditLedger, signer) } : {}),
      ...(this.options.dataRequests === true ? { dataRequests: DataRequests__factory.connect(a.dataRequests, signer) } : {}),
    };
  }

  /** Contracts read by the assertions. */
  readers() {
    return {
      token: EFedToken__factory.connect(this.addresses.token, this.provider),
      staking: Staking__factory.connect(this.addresses.staking, this.provider),
      disputes: Disputes__factory.connect(this.addresses.disputes, this.provider),
      trust: TrustScores__factory.connect(this.addresses.trust, this.provider),
      rewards: VerifierRewards__factory.connect(this.addresses.rewards, this.provider),
      auditLedger: AuditLedger__factory.connect(this.addresses.auditLedger, this.provider),
      dataRequests: DataRequests__factory.connect(this.addresses.dataRequests, this.provider),
    };
  }

  async mint(to: string, amount: bigint): Promise<void> {
    await (await EFedToken__factory.connect(this.addresses.token, this.admin).mint(to, amount)).wait();
  }

  async mine(blocks = 1): Promise<void> {
    await this.provider.send("hardhat_mine", [`0x${blocks.toString(16)}`]);
  }

  async increaseTime(seconds: bigint): Promise<void> {
    await this.provider.send("evm_increaseTime", [Number(seconds)]);
    await this.mine();
  }

  /**
   * An in-process server for layers [first, last), staked and registered on chain under its own
   * (fresh, funded) key; `wrap` makes it compute wrongly (scripts/devnet/faultyShard.ts).
   */
  async stakedServer(options: { first?: number; last?: number; wrap?: (s: Shard) => Shard } = {}): Promise<StakedServer> {
    const { first = 0, last = this.model.config.numLayers, wrap } = options;
    const staking = Staking__factory.connect(this.addresses.staking, this.provider);
    const running = await startServer(this.model, first, last, this.scratch, {}, this.variantId, undefined, {}, {
      isVerifier: (a) => staking.isActiveVerifier(a),
      commitments: this.addresses.commitments,
    }, wrap);
    this.servers.push(running);
    const signer = new NonceManager(running.wallet.connect(this.provider));
    await (await this.admin.sendTransaction({ to: running.wallet.address, value: parseEther("10") })).wait();
    await this.mint(running.wallet.address, SERVER_STAKE);
    const c = this.contractsFor(signer);
    await (await c.token.approve(this.addresses.staking, SERVER_STAKE)).wait();
    await (await c.staking.deposit(SERVER_STAKE)).wait();
    await (await c.staking.registerServer(this.variantId, first, last, running.server.url, 0n)).wait();
    return { running, signer };
  }

  /** A daemon for dev account `index`, registered as a verifier, with its own state file. */
  async daemonFor(
    index: number,
    sampleRate: number,
    statePath = join(this.scratch, `verifier-${index}.sqlite`),
    fromBlock = 0,
    /** Tokens minted beside the stake, for challenge bonds. */
    bond = FULL_BOND,
  ): Promise<VerifierDaemon> {
    const wallet = new Wallet(DEV_KEYS[index]!, this.provider);
    const signer = new NonceManager(wallet);
    const contracts = this.contractsFor(signer);
    if (!(await contracts.staking.isActiveVerifier(wallet.address))) await this.mint(wallet.address, DEVNET_PARAMS.stake.verifierMinStake + bond);
    await ensureVerifier(contracts, wallet.address, silent);
    const state = AuditState.open(statePath);
    this.states.push(state);
    return new VerifierDaemon({
      key: wallet.signingKey,
      address: wallet.address,
      provider: this.provider,
      chainId: 31337n,
      contracts,
      replayers: this.replayers,
      state,
      sampleRate,
      tolerance: toleranceFor(this.model.compression),
      logger: silent,
      fromBlock,
    });
  }

  /** The challenger and the three committee-only daemons, made once. */
  crew(): Promise<Crew> {
    this.crewOnce ??= (async () => ({
      challenger: await this.daemonFor(0, 1),
      members: [await this.daemonFor(1, 0), await this.daemonFor(2, 0), await this.daemonFor(3, 0)],
    }))();
    return this.crewOnce;
  }

  /**
   * Serves one 8-step greedy generation over `route` (servers in layer order), then each server
   * posts its receipts in one batch; returns the batch ids in route order.
   */
  async serveAndCommit(route: readonly StakedServer[]): Promise<number[]> {
    await generateOn(this.head, route.map((s) => s.running), PROMPT, { maxTokens: 8 });
    const batches: number[] = [];
    for (const s of route) {
      const committer = new Committer({ commitments: this.contractsFor(s.signer).commitments, store: s.running.store, maxReceiptsPerBatch: 1000, logger: silent });
      const batchId = await committer.commitOnce();
      if (batchId === undefined) throw new Error(`server ${s.running.wallet.address} had no receipts to commit`);
      batches.push(batchId);
    }
    return batches;
  }

  /**
   * Runs the open disputes to their end: a block for the draw, the challenger draws the committees,
   * each member re-executes and commits, the commit phase passes, each member reveals (the last
   * reveal settles). With `restartBeforeReveal` the members are replaced by daemons on their state
   * files, which reveal with the salts the state kept.
   */
  async runCommittee(disputeId: bigint, restartBeforeReveal = false): Promise<{ committee: string[]; commits: bigint[][]; reveals: RoundSummary[] }> {
    const { challenger, members: voters } = await this.crew();
    let members = voters;
    await this.mine();
    await challenger.runOnce();
    const committee = [...(await this.readers().disputes.committee(disputeId))];
    const commits: bigint[][] = [];
    for (const m of members) commits.push((await m.runOnce()).committed);
    await this.increaseTime(DEVNET_PARAMS.disputes.commitPeriod + 1n);
    // (they replace the crew's: two daemons of one key in one process would share nonces)
    if (restartBeforeReveal) {
      members = [await this.daemonFor(1, 0, this.states[1]!.path), await this.daemonFor(2, 0, this.states[2]!.path), await this.daemonFor(3, 0, this.states[3]!.path)];
      this.crewOnce = Promise.resolve({ challenger, members });
    }
    const reveals: RoundSummary[] = [];
    for (const m of members) reveals.push(await m.runOnce());
    return { committee, commits, reveals };
  }

  /**
   * The trust score TrustScores gives a server with one failed audit and no credit, from the
   * deployed parameters: priorPass / (priorPass + priorFail + failureWeight) · failureRetain,
   * each product rounded down as the contract rounds it.
   */
  async trustAfterOneFailure(): Promise<bigint> {
    const WAD = 10n ** 18n;
    const p = await this.readers().trust.params();
    const rate = (p.priorPass * WAD) / (p.priorPass + p.priorFail + p.failureWeight * WAD);
    return (rate * ((p.failureRetainBps * WAD) / 10_000n)) / WAD;
  }
}

/**
 * A test file's chain: started (model `name` in a fresh scratch directory) before its tests, and
 * after them `beforeStop` runs (what the file started itself), then the chain stops and the
 * directory goes. `net` is set once the file's beforeAll hooks have run.
 */
export function useVerifierChain(
  name: string,
  beforeStop: () => Promise<unknown> = () => Promise.resolve(),
  options: ChainOptions = {},
): { readonly net: VerifierChain; scratch: string } {
  const scratch = scratchDir();
  let net: VerifierChain | undefined;
  beforeAll(async () => {
    net = await VerifierChain.start(scratch.dir, name, options);
  }, 120_000);
  afterAll(async () => {
    await beforeStop();
    await net?.stop();
    scratch.cleanup();
  });
  return {
    get net(): VerifierChain {
      if (net === undefined) throw new Error(`the chain of ${name} is not started (used outside a test?)`);
      return net;
    },
    scratch: scratch.dir,
  };
}
