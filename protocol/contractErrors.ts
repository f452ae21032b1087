import { Interface, ZeroHash, formatUnits, getAddress, id, type ErrorDescription, type ErrorFragment, type Result } from "ethers";
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
} from "../types/ethers-contracts/index.js";
import { EFedError } from "./errors.js";

/**
 * Turns a contract revert into something a person can act on: the custom error's name, its
 * arguments, and one sentence that says what was wrong in the operator's units (tokens, dates,
 * layer ranges). Node and client both decode through here, so a revert reads the same everywhere.
 *
 * A contract added to the protocol adds its factory to ABIS; an error without a sentence below is
 * still decoded by name and arguments (the unit test lists which errors have none).
 */
const ABIS: readonly Interface[] = [
  EFedToken__factory.createInterface(),
  ModelRegistry__factory.createInterface(),
  Staking__factory.createInterface(),
  Commitments__factory.createInterface(),
  Disputes__factory.createInterface(),
  DataRequests__factory.createInterface(),
  AuditLedger__factory.createInterface(),
  PaymentChannels__factory.createInterface(),
  TicketBroker__factory.createInterface(),
  TrustScores__factory.createInterface(),
  VerifierRewards__factory.createInterface(),
];

/** Symbol of the protocol token; amounts are 18-decimal base units. */
export const TOKEN_SYMBOL = "EFED";

/** Every custom error of the protocol's contracts, one entry per selector. */
const FRAGMENTS: ReadonlyMap<string, ErrorFragment> = (() => {
  const bySelector = new Map<string, ErrorFragment>();
  for (const iface of ABIS) iface.forEachError((f) => bySelector.set(f.selector, f));
  return bySelector;
})();
const ALL = new Interface([...FRAGMENTS.values()]);

/** A decoded revert: `name`, positional `args`, `text` as Name(arg, …) and a plain-language `sentence`. */
export interface DecodedContractError {
  name: string;
  args: readonly unknown[];
  text: string;
  sentence: string;
}

/** Names of every custom error the decoder knows (for tests and docs). */
export function knownContractErrors(): string[] {
  return [...FRAGMENTS.values()].map((f) => f.name).sort();
}

/** True when `name` has a sentence of its own (not only the generic "Name(args)"). */
export function hasSentence(name: string): boolean {
  return name in SENTENCES;
}

/** Decodes the revert data inside an ethers error (or raw revert data); undefined when there is none or it is unknown. */
export function decodeContractError(errOrData: unknown): DecodedContractError | undefined {
  const data = typeof errOrData === "string" ? errOrData : revertData(errOrData);
  if (data === undefined || data.length < 10) return undefined;
  let parsed: ErrorDescription | null;
  try {
    parsed = ALL.parseError(data);
  } catch {
    return undefined; // selector known but arguments malformed: not something we can describe
  }
  if (parsed === null) return undefined;
  const args = [...parsed.args];
  const text = `${parsed.name}(${args.map(argText).join(", ")})`;
  const sentence = SENTENCES[parsed.name]?.(parsed.args) ?? text;
  return { name: parsed.name, args, text, sentence };
}

/**
 * One line for any error a chain call can throw: a decoded custom error as "Name: sentence", a call
 * that returned nothing as "no contract at …" (a deployment file that does not match the chain), an
 * unknown revert with its selector, anything else by its short message.
 */
export function describeChainError(err: unknown): string {
  const decoded = decodeContractError(err);
  if (decoded !== undefined) return `${decoded.name}: ${decoded.sentence}`;
  const e = err as { code?: unknown; value?: unknown; shortMessage?: unknown; message?: unknown; transaction?: { to?: unknown } } | null;
  if (e !== null && typeof e === "object" && e.code === "BAD_DATA" && e.value === "0x") {
    const to = typeof e.transaction?.to === "string" ? ` at ${e.transaction.to}` : "";
    return (
      `the contract${to} returned no data: there is no contract there on this chain (was the chain restarted or ` +
      "redeployed?). Deploy again with npm run deploy, or pass --deployment with the file of this chain's deployment"
    );
  }
  const data = revertData(err);
  if (data !== undefined && data.length >= 10) return `the call reverted with an error this version does not know (selector ${data.slice(0, 10)})`;
  if (e !== null && typeof e === "object") {
    if (typeof e.shortMessage === "string") return e.shortMessage;
    if (typeof e.message === "string") return e.message;
  }
  return String(err);
}

/** A contract call failed; `errorName` is its custom error (e.g. StakingInsufficientStake) when it decodes. */
export class ContractCallError extends EFedError {
  constructor(
    readonly action: string,
    readonly errorName: string | undefined,
    readonly errorArgs: readonly unknown[] | undefined,
    message: string,
    cause: unknown,
  ) {
    super("CHAIN_CALL_FAILED", message, { details: { action, errorName }, cause });
  }
}

/** Runs a contract call (send and wait, or a read); any failure becomes a ContractCallError naming `action`. */
export async function contractCall<T>(action: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof ContractCallError) throw err;
    const decoded = decodeContractError(err);
    throw new ContractCallError(action, decoded?.name, decoded?.args, `${action} failed: ${describeChainError(err)}`, err);
  }
}

/** Revert data anywhere in an ethers error chain (error.data, info.error.data, error, cause). */
function revertData(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e !== null && typeof e === "object" && depth < 6; depth++) {
    const data = (e as { data?: unknown }).data;
    if (typeof data === "string" && data.startsWith("0x") && data.length >= 10) return data;
    const nested = (e as { data?: { data?: unknown } }).data?.data;
    if (typeof nested === "string" && nested.startsWith("0x") && nested.length >= 10) return nested;
    const info = (e as { info?: { error?: { data?: unknown } } }).info?.error?.data;
    if (typeof info === "string" && info.startsWith("0x") && info.length >= 10) return info;
    e = (e as { error?: unknown; cause?: unknown }).error ?? (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function argText(a: unknown): string {
  if (Array.isArray(a)) return `(${a.map(argText).join(", ")})`;
  return String(a);
}

/** 1234.5 tokens as "1,234.5 EFED" (base units with 18 decimals). */
export function formatTokens(wei: bigint): string {
  const [whole = "0", frac = "0"] = formatUnits(wei, 18).split(".");
  const negative = whole.startsWith("-");
  const digits = negative ? whole.slice(1) : whole;
  const grouped = digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${negative ? "-" : ""}${grouped}${frac === "0" ? "" : `.${frac}`} ${TOKEN_SYMBOL}`;
}

/** Unix seconds as an ISO date (UTC). */
export function formatTime(unixSeconds: bigint): string {
  return new Date(Number(unixSeconds) * 1000).toISOString().replace(".000Z", "Z");
}

const ROLE_NAMES: ReadonlyMap<string, string> = new Map([
  [ZeroHash, "DEFAULT_ADMIN_ROLE"],
  ...["GOVERNANCE_ROLE", "REGISTRAR_ROLE", "SLASHER_ROLE", "COMMITMENTS_ROLE", "AUDITOR_ROLE", "PAYMENTS_ROLE", "REWARDER_ROLE"].map(
    (name): [string, string] => [id(name), name],
  ),
]);
const STAKING_ROLES = ["no role", "a server", "a verifier"];
const DISPUTE_STATUS = ["None", "Open", "Voting", "Settled"];

const addr = (a: unknown): string => getAddress(String(a));
const tok = (a: unknown): string => formatTokens(BigInt(a as bigint));
const time = (a: unknown): string => formatTime(BigInt(a as bigint));
const num = (a: unknown): string => String(a);
const hex = (a: unknown): string => String(a);
const layers = (first: unknown, last: unknown): string => `layers ${num(first)}–${num(BigInt(last as bigint) - 1n)}`;
const role = (r: unknown): string => ROLE_NAMES.get(String(r)) ?? String(r);

/** One sentence per custom error, in the words of the person who sent the transaction. */
const SENTENCES: Record<string, (a: Result) => string> = {
  // EFedToken (OpenZeppelin ERC20, permit, ownable)
  ERC20InsufficientBalance: (a) => `${addr(a[0])} holds ${tok(a[1])}; the transfer needs ${tok(a[2])}`,
  ERC20InsufficientAllowance: (a) => `${addr(a[0])} may spend only ${tok(a[1])} of the sender's tokens; it needs ${tok(a[2])} (approve more, or use the permit)`,
  ERC20InvalidApprover: (a) => `${addr(a[0])} cannot approve (the zero address)`,
  ERC20InvalidReceiver: (a) => `tokens cannot be sent to ${addr(a[0])}`,
  ERC20InvalidSender: (a) => `tokens cannot be sent from ${addr(a[0])}`,
  ERC20InvalidSpender: (a) => `${addr(a[0])} cannot be approved as a spender`,
  ERC2612ExpiredSignature: (a) => `the permit expired at ${time(a[0])}; sign a new one`,
  ERC2612InvalidSigner: (a) => `the permit was signed by ${addr(a[0])}, not by the token owner ${addr(a[1])}`,
  InvalidAccountNonce: (a) => `the permit's nonce is stale: ${addr(a[0])}'s next permit nonce is ${num(a[1])}`,
  InvalidShortString: () => "a name or version string is too long for the token's EIP-712 domain",
  StringTooLong: (a) => `the string "${String(a[0])}" is too long`,
  OwnableUnauthorizedAccount: (a) => `${addr(a[0])} is not the token's owner (only the owner may mint)`,
  OwnableInvalidOwner: (a) => `${addr(a[0])} cannot own the token`,
  ECDSAInvalidSignature: () => "the signature does not recover to any address",
  ECDSAInvalidSignatureLength: (a) => `the signature is ${num(a[0])} bytes long; 65 are expected`,
  ECDSAInvalidSignatureS: (a) => `the signature's s value ${hex(a[0])} is in the upper half (malleable signatures are refused)`,
  SafeERC20FailedOperation: (a) => `a token transfer through ${addr(a[0])} failed`,
  // access control (every AccessControl contract)
  AccessControlUnauthorizedAccount: (a) => `${addr(a[0])} does not hold ${role(a[1])} on this contract`,
  AccessControlBadConfirmation: () => "a role can only be renounced by the account holding it",
  // ModelRegistry
  RegistryZeroVariantId: () => "the variant id (manifest hash) must not be zero",
  RegistryZeroLayers: () => "a variant needs at least one layer",
  RegistryBadManifestURI: (a) => `the manifest URI is ${num(a[0])} bytes long; it must be 1 to ${num(a[1])} bytes`,
  RegistryVariantExists: (a) => `variant ${hex(a[0])} is already registered`,
  RegistryUnknownVariant: (a) => `variant ${hex(a[0])} is not registered: register it first with efed model register`,
  RegistryVariantRetired: (a) => `variant ${hex(a[0])} is retired`,
  // Staking
  StakingZeroAmount: () => "the amount must be more than zero",
  StakingZeroAddress: () => "an address argument is the zero address",
  StakingInsufficientStake: (a) => `${addr(a[0])} has ${tok(a[1])} bonded free of disputes; this needs ${tok(a[2])}`,
  StakingBadLayerRange: (a) => `layers ${num(a[0])}:${num(a[1])} are not a non-empty range within the variant's ${num(a[2])} layers`,
  StakingVariantInactive: (a) => `variant ${hex(a[0])} is not registered or is retired`,
  StakingBadEndpoint: (a) => `the endpoint is ${num(a[0])} bytes long; it must be 1 to ${num(a[1])} bytes`,
  StakingRoleConflict: (a) => `${addr(a[0])} is already registered as ${STAKING_ROLES[Number(a[1])] ?? `role ${num(a[1])}`}; one key holds one role`,
  StakingNotRegistered: (a) => `${addr(a[0])} is not registered as a server or verifier`,
  StakingUnbondExceedsBonded: (a) => `${addr(a[0])} asked to unbond ${tok(a[1])} but has only ${tok(a[2])} bonded`,
  StakingUnbondingNotReady: (a) => `${addr(a[0])}'s unbonding stake can be withdrawn from ${time(a[1])}; it is now ${time(a[2])}`,
  StakingNothingToWithdraw: (a) => `${addr(a[0])} has nothing unbonding: request unbonding first`,
  StakingStakeLocked: (a) => `${tok(a[1])} of ${addr(a[0])}'s ${tok(a[2])} stake is frozen by open disputes`,
  StakingLockExceedsStake: (a) => `locking ${tok(a[1])} more of ${addr(a[0])}'s stake would exceed its ${tok(a[3])} (${tok(a[2])} already locked)`,
  StakingLockExists: (a) => `${addr(a[0])} already holds lock ${hex(a[1])}`,
  StakingUnknownLock: (a) => `${addr(a[0])} holds no lock ${hex(a[1])}`,
  StakingSlashExceedsLock: (a) => `slashing ${tok(a[1])} exceeds the ${tok(a[2])} held by lock ${hex(a[0])}`,
  StakingUnbondingTooShort: (a) => `an unbonding delay of ${num(a[0])} s must exceed the challenge window plus the longest dispute (${num(a[1])} s)`,
  StakingZeroProbation: () => "the probation period must be positive",
  StakingUnknownRegistration: (a) => `no server registration has id ${num(a[0])}`,
  // Commitments
  CommitmentsNotRegistered: (a) => `${addr(a[0])} is not a registered server`,
  CommitmentsNotRegisteredFor: (a) => `${addr(a[0])} is not registered for variant ${hex(a[1])} ${layers(a[2], a[3])}`,
  CommitmentsZeroRoot: () => "the batch's Merkle root must not be zero",
  CommitmentsEmptyBatch: () => "a batch must hold at least one receipt",
  CommitmentsBadTimeRange: (a) =>
    `the batch covers ${time(a[0])} to ${time(a[1])}; it must start at or after the previous batch's end ${time(a[2])} and not end after now (${time(a[3])})`,
  CommitmentsDuplicateRoot: (a) => `${addr(a[0])} already posted root ${hex(a[1])}`,
  CommitmentsUnknownBatch: (a) => `there is no batch ${num(a[0])}`,
  // ReceiptLib (Disputes, DataRequests, AuditLedger: a receipt taken as evidence)
  ReceiptWindowClosed: (a) => `batch ${num(a[0])}'s receipts could be challenged or requested until ${time(a[1])}; it is now ${time(a[2])}`,
  ReceiptNotInBatch: (a) => `receipt ${hex(a[1])} is not in batch ${num(a[0])} (the Merkle proof does not match its root)`,
  // Disputes
  DisputesNotVerifier: (a) => `${addr(a[0])} is not an active verifier`,
  DisputesReceiptAlreadyDisputed: (a) => `receipt ${hex(a[0])} is already disputed in dispute ${num(a[1])}`,
  DisputesReceiptSlashedAsWithheld: (a) => `receipt ${hex(a[0])}'s step was already slashed as withheld by data request ${num(a[1])}; one step is punished once`,
  DisputesDataRequestsNotSet: () => "this Disputes contract has no DataRequests contract set yet (setDataRequests), so it cannot check a step was not already slashed",
  DisputesDataRequestsAlreadySet: (a) => `the DataRequests contract is set once; it is already ${addr(a[0])}`,
  DisputesUnknown: (a) => `there is no dispute ${num(a[0])}`,
  DisputesWrongStatus: (a) =>
    `dispute ${num(a[0])} is ${DISPUTE_STATUS[Number(a[1])] ?? num(a[1])}; this needs it ${DISPUTE_STATUS[Number(a[2])] ?? num(a[2])}`,
  DisputesDrawTooEarly: (a) => `dispute ${num(a[0])}'s committee can be drawn from block ${num(a[1])}; this is block ${num(a[2])}`,
  DisputesCommitClosed: (a) => `votes on dispute ${num(a[0])} could be committed until ${time(a[1])}; it is now ${time(a[2])}`,
  DisputesNotRevealTime: (a) => `votes on dispute ${num(a[0])} are revealed from ${time(a[1])} to ${time(a[2])}; it is now ${time(a[3])}`,
  DisputesNotOnCommittee: (a) => `${addr(a[1])} is not on dispute ${num(a[0])}'s committee`,
  DisputesAlreadyVoted: (a) => `${addr(a[1])} already voted on dispute ${num(a[0])}`,
  DisputesBadReveal: (a) => `${addr(a[1])}'s revealed vote on dispute ${num(a[0])} does not match its commitment`,
  DisputesNotSettleable: (a) => `dispute ${num(a[0])} can be settled from ${time(a[1])}; it is now ${time(a[2])}`,
  DisputesBadParams: (a) => `the dispute parameters ${argText(a[0])} are inconsistent (periods must fit the longest dispute, ${num(a[1])} s)`,
  // PaymentChannels
  // DataRequests
  DataRequestsNotVerifier: (a) => `${addr(a[0])} is not an active verifier`,
  DataRequestsAlreadyRequested: (a) => `receipt ${hex(a[0])} was already requested (request ${num(a[1])})`,
  DataRequestsReceiptDisputed: (a) => `receipt ${hex(a[0])} is disputed in dispute ${num(a[1])}: its committee settles it`,
  DataRequestsNothingToLock: (a) => `${addr(a[0])} has no stake left to lock for a data request`,
  DataRequestsStepTooLarge: (a) => `the step covers ${num(a[0])} tokens; steps of more than ${num(a[1])} tokens cannot be requested on chain (dispute it instead)`,
  DataRequestsUnknown: (a) => `there is no data request ${num(a[0])}`,
  DataRequestsNotOpen: (a) => `data request ${num(a[0])} is no longer open (status ${num(a[1])})`,
  DataRequestsNotServer: (a) => `only the server ${addr(a[2])} may answer data request ${num(a[0])}, not ${addr(a[1])}`,
  DataRequestsResponseClosed: (a) => `data request ${num(a[0])} could be answered until ${time(a[1])}; it is now ${time(a[2])}`,
  DataRequestsNotExpired: (a) => `data request ${num(a[0])} can be answered until ${time(a[1])}; it can be slashed only after (it is now ${time(a[2])})`,
  DataRequestsBadEncoding: (a) => `activation encoding ${num(a[0])} is not 0 (fp32), 1 (fp16) or 2 (int8)`,
  DataRequestsBadPayloadLength: (a) => `a ${num(a[1])}×${num(a[2])} tensor in encoding ${num(a[0])} needs ${num(a[4])} payload bytes, not ${num(a[3])}`,
  DataRequestsInputMismatch: (a) => `the posted input hashes to ${hex(a[0])}; the receipt signs ${hex(a[1])}`,
  DataRequestsOutputMismatch: (a) => `the posted output hashes to ${hex(a[0])}; the receipt signs ${hex(a[1])}`,
  DataRequestsBadParams: (a) => `the data-request parameters ${argText(a[0])} are inconsistent (response period must fit the longest dispute, ${num(a[1])} s)`,
  // AuditLedger
  AuditLedgerNotVerifier: (a) => `${addr(a[0])} is not an active verifier`,
  AuditLedgerRecordClosed: (a) => `passes of batch ${num(a[0])} could be recorded until ${time(a[1])}; it is now ${time(a[2])}`,
  AuditLedgerAlreadyRecorded: (a) => `${addr(a[1])} already recorded its passes of batch ${num(a[0])} (one record per batch)`,
  AuditLedgerBadLeafCount: (a) => `a record holds 1 to ${num(a[2])} leaves with one proof each; got ${num(a[0])} leaves and ${num(a[1])} proofs`,
  AuditLedgerLeavesNotAscending: (a) => `the leaves must be strictly ascending; the one at index ${num(a[0])} is not`,
  AuditLedgerNotSampled: (a) => `receipt ${hex(a[1])} of batch ${num(a[0])} is not in the on-chain audit sample`,
  AuditLedgerLeafDisputed: (a) => `receipt ${hex(a[0])} is disputed in dispute ${num(a[1])}: no pass can be recorded for it`,
  AuditLedgerSeedUnavailable: (a) => `batch ${num(a[0])}'s sample seed (block ${num(a[1])}) is not available yet, or too old and never anchored`,
  AuditLedgerNoRecord: (a) => `${addr(a[1])} recorded no passes of batch ${num(a[0])}`,
  AuditLedgerLeavesMismatch: (a) => `the leaves given are not the ones ${addr(a[1])} recorded for batch ${num(a[0])}`,
  AuditLedgerBadIndex: (a) => `index ${num(a[0])} is outside the ${num(a[1])} recorded leaves`,
  AuditLedgerPassNotFalse: (a) => `the pass of receipt ${hex(a[0])} is not shown false: dispute ${num(a[1])} did not settle with the server at fault`,
  AuditLedgerAlreadySlashed: (a) => `${addr(a[0])}'s pass of receipt ${hex(a[1])} was already slashed`,
  AuditLedgerBadParams: (a) => `the audit parameters ${argText(a[0])} are inconsistent (sample rate 1 to 10⁹ ppb, shares at most 10,000 bps)`,
  ChannelZeroAmount: () => "the amount must be more than zero",
  ChannelServerNotActive: (a) => `${addr(a[0])} is not a serving, eligible server (registered, collateralized, past probation, trusted)`,
  ChannelUnknown: (a) => `there is no channel ${hex(a[0])}`,
  ChannelUnauthorized: (a) => `${addr(a[1])} may not do this on channel ${hex(a[0])}; only ${addr(a[2])} may`,
  ChannelIsClosed: (a) => `channel ${hex(a[0])} is closed`,
  ChannelClosing: (a) => `channel ${hex(a[0])} is closing (ready at ${time(a[1])})`,
  ChannelNotClosing: (a) => `channel ${hex(a[0])} has no close in progress`,
  ChannelCloseNotReady: (a) => `channel ${hex(a[0])} can be closed from ${time(a[1])}; it is now ${time(a[2])}`,
  ChannelBadVoucherSigner: (a) => `the voucher for channel ${hex(a[0])} was signed by ${addr(a[1])}, not by the client ${addr(a[2])}`,
  ChannelVoucherNotIncreasing: (a) => `the voucher's ${tok(a[1])} does not exceed the ${tok(a[2])} already paid on channel ${hex(a[0])}`,
  ChannelDepositExhausted: (a) => `channel ${hex(a[0])}'s deposit of ${tok(a[1])} is already paid out`,
  ChannelFeeTooHigh: (a) => `a fee of ${num(a[0])} bps exceeds the maximum of ${num(a[1])} bps`,
  ChannelZeroCloseTimeout: () => "the close timeout must be positive",
  ChannelZeroAddress: () => "an address argument is the zero address",
  // TicketBroker
  TicketZeroAmount: () => "the amount must be more than zero",
  TicketAmountTooLarge: (a) => `a balance of ${tok(a[0])} would exceed the largest the ticket broker holds per client (${tok(a[1])})`,
  TicketZeroAddress: () => "an address argument is the zero address",
  TicketFeeTooHigh: (a) => `a fee of ${num(a[0])} bps exceeds the maximum of ${num(a[1])} bps`,
  TicketZeroUnlockPeriod: () => "the unlock period must be positive",
  TicketZeroReservePoolSize: () => "the reserve pool size must be positive",
  TicketWrongRecipient: (a) => `ticket ${hex(a[0])} pays ${addr(a[1])}; ${addr(a[2])} may not redeem it`,
  TicketRecipientNotServing: (a) => `${addr(a[0])} is not a serving server, so it cannot redeem tickets`,
  TicketExpired: (a) => `ticket ${hex(a[0])} expired at ${time(a[1])}; it is now ${time(a[2])}`,
  TicketBadSigner: (a) => `ticket ${hex(a[0])} was signed by ${addr(a[1])}, not by its sender ${addr(a[2])} (another chain, contract or key?)`,
  TicketBadRecipientRand: (a) => `the revealed random number does not hash to ticket ${hex(a[0])}'s commitment ${hex(a[1])}`,
  TicketNotWinning: (a) => `ticket ${hex(a[0])} does not win; only winning tickets are redeemed`,
  TicketAlreadyRedeemed: (a) => `ticket ${hex(a[0])} was redeemed already`,
  TicketZeroFaceValue: (a) => `ticket ${hex(a[0])} has a face value of zero`,
  TicketSenderUnfunded: (a) => `ticket ${hex(a[0])}: client ${addr(a[1])} has no deposit left and no reserve share for ${addr(a[2])}`,
  TicketUnlockPending: (a) => `${addr(a[0])} is already unlocking; it can withdraw from ${time(a[1])}`,
  TicketNotUnlocking: (a) => `${addr(a[0])} has not started an unlock (call unlock, then withdraw after the unlock period)`,
  TicketUnlockNotReady: (a) => `${addr(a[0])} can withdraw from ${time(a[1])}; it is now ${time(a[2])}`,
  TicketNothingToWithdraw: (a) => `${addr(a[0])} has no deposit or reserve in the ticket broker`,
  // TrustScores
  TrustBadParams: (a) => `the trust parameters ${argText(a[0])} are inconsistent (positive priors, non-zero weights, retain ≤ 10,000 bps, θ ≤ 1)`,
  TrustZeroServer: () => "the server address is the zero address",
  TrustZeroCount: () => "the number of passed audits to record must be more than zero",
  // VerifierRewards
  RewardsZeroVerifier: () => "the verifier address is the zero address",
  RewardsInsufficientPool: (a) => `allocating ${tok(a[0])} exceeds the ${tok(a[1])} available in the reward pool`,
  RewardsNothingToClaim: (a) => `${addr(a[0])} has no reward to claim`,
};
