import { parseEther, type Signer } from "ethers";
import {
  AuditLedger__factory,
  Commitments__factory,
  DataRequests__factory,
  Disputes__factory,
  EFedToken__factory,
  ModelRegistry__factory,
  PaymentChannels__factory,
  Staking__factory,
  TicketBroker__factory,
  TrustScores__factory,
  VerifierRewards__factory,
  type AuditLedger,
  type Commitments,
  type DataRequests,
  type Disputes,
  type EFedToken,
  type ModelRegistry,
  type PaymentChannels,
  type Staking,
  type TicketBroker,
  type TrustScores,
  type VerifierRewards,
} from "../../types/ethers-contracts/index.js";

const HOUR = 3600n;
const DAY = 24n * HOUR;

/** Every constructor parameter of the protocol, in one place. Amounts in token base units (18 decimals). */
export interface ProtocolParams {
  /** Seconds. `probationPeriod`: how long a newly registered server waits before clients may open channels to it. */
  timing: { challengeWindow: bigint; maxDisputeDuration: bigint; unbondingDelay: bigint; probationPeriod: bigint };
  stake: { serverBaseStake: bigint; serverStakePerLayer: bigint; verifierMinStake: bigint };
  trust: {
    priorPass: bigint;
    priorFail: bigint;
    /** Token base units paid through channels worth one passed audit. */
    paidPerCredit: bigint;
    failureWeight: bigint;
    failureRetainBps: bigint;
    threshold: bigint;
  };
  /** Disputes (IDisputes.Params): amounts in token base units, periods in seconds. */
  disputes: {
    challengeBond: bigint;
    serverSlash: bigint;
    voterPenalty: bigint;
    voterReward: bigint;
    challengerShareBps: bigint;
    /** Bond added per unit of server stake a dispute locks, basis points; paid to a server found correct. */
    lockBondBps: bigint;
    committeeSize: bigint;
    commitPeriod: bigint;
    revealPeriod: bigint;
  };
  /** DataRequests (IDataRequests.Params); DEVNET_DATA_REQUEST_PARAMS when absent. */
  dataRequests?: DataRequestParams;
  /** AuditLedger (IAuditLedger.Params): passed audits on chain, their reward, the false-pass penalty. */
  audits: {
    /** On-chain sample rate, parts per 10⁹: only receipts sampled at this rate count as audited. */
    sampleRatePpb: bigint;
    /** Audit rewards for a server never exceed this share of its paid work, basis points. */
    rewardBudgetBps: bigint;
    /** Share of a false pass's penalty paid to the challenger that exposed it, basis points. */
    exposerShareBps: bigint;
    rewardPerAudit: bigint;
    falsePassPenalty: bigint;
  };
  /** Protocol fee on every channel redemption, basis points. */
  feeBps: bigint;
  /** Seconds a client waits between starting and finishing a channel close. */
  closeTimeoutSeconds: bigint;
  /** TicketBroker (probabilistic payments); its fee is `feeBps`, like the channels'. */
  tickets: {
    /** Seconds between a client's unlock and its withdrawal: how long servers have to redeem winners. */
    unlockPeriod: bigint;
    /** How many servers a client's frozen reserve is split among (each may draw reserve / this). */
    reservePoolSize: bigint;
  };
}

/** Parameters for a local devnet: short enough to exercise, shaped like production. */
export const DEVNET_PARAMS: ProtocolParams = {
  timing: { challengeWindow: HOUR, maxDisputeDuration: DAY, unbondingDelay: 2n * DAY, probationPeriod: 10n * 60n },
  stake: {
    serverBaseStake: parseEther("1000"),
    serverStakePerLayer: parseEther("100"),
    verifierMinStake: parseEther("500"),
  },
  trust: {
    priorPass: parseEther("1"),
    priorFail: parseEther("1"),
    paidPerCredit: parseEther("1000"),
    failureWeight: 10n,
    failureRetainBps: 5_000n,
    threshold: parseEther("0.4"),
  },
  disputes: {
    challengeBond: parseEther("100"),
    serverSlash: parseEther("1000"),
    voterPenalty: parseEther("50"),
    voterReward: parseEther("10"),
    challengerShareBps: 5_000n,
    lockBondBps: 1_000n,
    committeeSize: 3n,
    commitPeriod: 6n * HOUR,
    revealPeriod: 6n * HOUR,
  },
  audits: {
    sampleRatePpb: 10_000_000n, // 1 %
    rewardBudgetBps: 500n, // = feeBps: rewards for auditing a server never exceed the fees its clients paid
    exposerShareBps: 5_000n,
    rewardPerAudit: parseEther("1"),
    falsePassPenalty: parseEther("250"),
  },
  feeBps: 500n,
  closeTimeoutSeconds: DAY,
  tickets: { unlockPeriod: DAY, reservePoolSize: 8n },
};

export interface Protocol {
  token: EFedToken;
  registry: ModelRegistry;
  staking: Staking;
  trust: TrustScores;
  commitments: Commitments;
  rewards: VerifierRewards;
  channels: PaymentChannels;
  disputes: Disputes;
  dataRequests: DataRequests;
  auditLedger: AuditLedger;
  ticketBroker: TicketBroker;
}

export type ProtocolAddresses = Record<keyof Protocol, string>;

/**
 * Deploys every contract with `deployer` as admin and wires them: staking reads trust scores from
 * TrustScores; Commitments extends how long a server's stake stays slashable (COMMITMENTS_ROLE);
 * channels and the ticket broker pay fees into VerifierRewards and record redemptions as paid work (PAYMENTS_ROLE);
 * Disputes holds the dispute roles (SLASHER_ROLE, AUDITOR_ROLE, REWARDER_ROLE). The same roles are
 * also granted to `disputeOperator` when given, so other dispute logic (an exact one-step proof, a
 * test harness) can plug in later without redeploying the rest.
 */
export async function deployProtocol(
  deployer: Signer,
  params: ProtocolParams = DEVNET_PARAMS,
  disputeOperator?: string,
): Promise<Protocol> {
  const admin = await deployer.getAddress();
  const token = await new EFedToken__factory(deployer).deploy(admin);
  const registry = await new ModelRegistry__factory(deployer).deploy(admin);
  const trust = await new TrustScores__factory(deployer).deploy(admin, params.trust);
  const staking = await new Staking__factory(deployer).deploy(
    admin,
    await token.getAddress(),
    await registry.getAddress(),
    params.timing,
    params.stake,
  );
  const commitments = await new Commitments__factory(deployer).deploy(await staking.getAddress());
  const rewards = await new VerifierRewards__factory(deployer).deploy(admin, await token.getAddress());
  const channels = await new PaymentChannels__factory(deployer).deploy(
    admin,
    await token.getAddress(),
    await staking.getAddress(),
    await rewards.getAddress(),
    params.feeBps,
    params.closeTimeoutSeconds,
  );
  const disputes = await new Disputes__factory(deployer).deploy(
    admin,
    await token.getAddress(),
    await staking.getAddress(),
    await commitments.getAddress(),
    await trust.getAddress(),
    await rewards.getAddress(),
    params.disputes,
  );
  await (await staking.setTrustSource(await trust.getAddress())).wait();
  await (await staking.grantRole(await staking.COMMITMENTS_ROLE(), await commitments.getAddress())).wait();
  await (await trust.grantRole(await trust.PAYMENTS_ROLE(), await channels.getAddress())).wait();
  await (await channels.setTrustRecorder(await trust.getAddress())).wait();
  for (const holder of [await disputes.getAddress(), ...(disputeOperator === undefined ? [] : [disputeOperator])]) {
    await (await staking.grantRole(await staking.SLASHER_ROLE(), holder)).wait();
    await (await trust.grantRole(await trust.AUDITOR_ROLE(), holder)).wait();
    await (await rewards.grantRole(await rewards.REWARDER_ROLE(), holder)).wait();
  }
  const dataRequests = await deployDataRequests(deployer, { token, staking, trust, commitments, rewards, disputes }, params.dataRequests);
  const auditLedger = await deployAuditLedger(deployer, params, { staking, commitments, disputes, trust, rewards });
  const ticketBroker = await deployTicketBroker(deployer, params, { token, staking, trust, rewards });
  return { token, registry, staking, trust, commitments, rewards, channels, disputes, dataRequests, auditLedger, ticketBroker };
}

/**
 * Probabilistic payments (issue 11, gas): TicketBroker, with the channels' fee and reward pool, and
 * PAYMENTS_ROLE in TrustScores so that redeemed winning tickets count as paid work.
 */
async function deployTicketBroker(
  deployer: Signer,
  params: ProtocolParams,
  c: Pick<Protocol, "token" | "staking" | "trust" | "rewards">,
): Promise<TicketBroker> {
  const broker = await new TicketBroker__factory(deployer).deploy(
    await deployer.getAddress(),
    await c.token.getAddress(),
    await c.staking.getAddress(),
    await c.rewards.getAddress(),
    params.feeBps,
    params.tickets.unlockPeriod,
    params.tickets.reservePoolSize,
  );
  const address = await broker.getAddress();
  await (await c.trust.grantRole(await c.trust.PAYMENTS_ROLE(), address)).wait();
  await (await broker.setTrustRecorder(await c.trust.getAddress())).wait();
  return broker;
}

/**
 * Audit records (issue 10): AuditLedger, wired like a second piece of dispute logic. Disputes also
 * gets COMMITMENTS_ROLE, so that each dispute keeps the server's stake slashable until it can have
 * settled; AuditLedger gets AUDITOR_ROLE (trust credit for passes), REWARDER_ROLE (rewards per pass),
 * SLASHER_ROLE (false passes) and COMMITMENTS_ROLE (a recording verifier's stake stays slashable).
 */
async function deployAuditLedger(
  deployer: Signer,
  params: ProtocolParams,
  c: Pick<Protocol, "staking" | "commitments" | "disputes" | "trust" | "rewards">,
): Promise<AuditLedger> {
  const ledger = await new AuditLedger__factory(deployer).deploy(
    await deployer.getAddress(),
    await c.staking.getAddress(),
    await c.commitments.getAddress(),
    await c.disputes.getAddress(),
    await c.trust.getAddress(),
    await c.rewards.getAddress(),
    params.audits,
  );
  const ledgerAddress = await ledger.getAddress();
  const commitmentsRole = await c.staking.COMMITMENTS_ROLE();
  await (await c.staking.grantRole(commitmentsRole, await c.disputes.getAddress())).wait();
  await (await c.staking.grantRole(commitmentsRole, ledgerAddress)).wait();
  await (await c.staking.grantRole(await c.staking.SLASHER_ROLE(), ledgerAddress)).wait();
  await (await c.trust.grantRole(await c.trust.AUDITOR_ROLE(), ledgerAddress)).wait();
  await (await c.rewards.grantRole(await c.rewards.REWARDER_ROLE(), ledgerAddress)).wait();
  return ledger;
}

export async function protocolAddresses(p: Protocol): Promise<ProtocolAddresses> {
  const entries = await Promise.all(
    Object.entries(p).map(async ([name, contract]) => [name, await (contract as { getAddress(): Promise<string> }).getAddress()]),
  );
  return Object.fromEntries(entries) as ProtocolAddresses;
}

// ------------------------------------------------------------------ data requests (withheld data on chain)

/** IDataRequests.Params: amounts in token base units, the response period in seconds. */
export interface DataRequestParams {
  /** Paid by the requester; goes to the server when it answers (its gas), back to the requester when it does not. */
  requestBond: bigint;
  /** Server stake locked per request, slashed when unanswered. */
  serverSlash: bigint;
  /** Share of the slash paid to the requester, basis points (the rest: the verifier reward pool). */
  requesterShareBps: bigint;
  /** Seconds the server has to post the data; at most timing.maxDisputeDuration. */
  responsePeriod: bigint;
  /** Largest step (receipt tokens) that may be requested: its data must fit one transaction. */
  maxTokens: bigint;
}

export const DEVNET_DATA_REQUEST_PARAMS: DataRequestParams = {
  requestBond: parseEther("10"),
  serverSlash: parseEther("1000"),
  requesterShareBps: 5_000n,
  responsePeriod: 2n * HOUR,
  // hidden 256 (the shipped model): 32 tokens in fp32 is 64 KiB of calldata, about 2.6M gas, within Geth's 128 KiB pool limit
  maxTokens: 32n,
};

/**
 * Deploys DataRequests and grants it what it needs: SLASHER_ROLE in Staking (its own lock per
 * request) and AUDITOR_ROLE in TrustScores (an unanswered request is a failed audit); Disputes
 * learns its address, to refuse a step it slashed as withheld.
 */
async function deployDataRequests(
  deployer: Signer,
  p: Pick<Protocol, "token" | "staking" | "trust" | "commitments" | "rewards" | "disputes">,
  params: DataRequestParams = DEVNET_DATA_REQUEST_PARAMS,
): Promise<DataRequests> {
  const dataRequests = await new DataRequests__factory(deployer).deploy(
    await deployer.getAddress(),
    await p.token.getAddress(),
    await p.staking.getAddress(),
    await p.commitments.getAddress(),
    await p.disputes.getAddress(),
    await p.trust.getAddress(),
    await p.rewards.getAddress(),
    params,
  );
  const address = await dataRequests.getAddress();
  await (await p.staking.grantRole(await p.staking.SLASHER_ROLE(), address)).wait();
  await (await p.trust.grantRole(await p.trust.AUDITOR_ROLE(), address)).wait();
  await (await p.disputes.setDataRequests(address)).wait();
  return dataRequests;
}
