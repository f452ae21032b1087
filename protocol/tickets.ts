import {
  AbiCoder,
  getAddress,
  getBytes,
  toBeHex,
  zeroPadValue,
  isHexString,
  keccak256,
  type Signer,
  type SigningKey,
  type TypedDataDomain,
  type TypedDataField,
} from "ethers";
import { DOMAIN_VERSION, canonicalSignature, typeHashOf, typedDataDigest } from "./eip712.js";
import { InvalidArgumentError } from "./errors.js";
import { keccak256Of } from "./keccak.js";
import { recoverAddress, signDigest } from "./secp256k1.js";

/**
 * Probabilistic tickets (Livepeer's scheme) paid from one client deposit in the TicketBroker
 * contract, shared by every server the client pays. What client and server both need: the EIP-712
 * types and domain (mirroring `TicketBroker.TICKET_TYPEHASH` and its `EIP712` constructor), signing
 * and recovery, the win check (`TicketBroker.isWinningTicket`), and the choice of face value and win
 * probability whose expected value is exactly what a step owes.
 *
 * Win probability is winProb / 2^256; winProb = 2^256 − 1 (CERTAIN_WIN_PROB) means probability 1,
 * since 2^256 does not fit a uint256.
 */
export const TICKET_DOMAIN_NAME = "eFed Ticket Broker";

/** Mirrors `TicketBroker.TICKET_TYPEHASH`; field order is the hashed order. */
export const TICKET_TYPES: Record<string, TypedDataField[]> = {
  Ticket: [
    { name: "recipient", type: "address" },
    { name: "sender", type: "address" },
    { name: "faceValue", type: "uint256" },
    { name: "winProb", type: "uint256" },
    { name: "senderNonce", type: "uint256" },
    { name: "recipientRandHash", type: "bytes32" },
    { name: "expiration", type: "uint64" },
    { name: "auxData", type: "bytes32" },
  ],
};

export const TWO_POW_256 = 1n << 256n;
/** winProb of a ticket that always wins. */
export const CERTAIN_WIN_PROB = TWO_POW_256 - 1n;

/** A ticket as the client signs it (ITicketBroker.Ticket). */
export interface Ticket {
  /** The server paid if it wins (its staked address). */
  recipient: string;
  /** The client whose deposit pays. */
  sender: string;
  /** Token base units paid when it wins. */
  faceValue: bigint;
  /** Wins with probability winProb / 2^256 (CERTAIN_WIN_PROB: always). */
  winProb: bigint;
  /** Distinct for every ticket under one recipientRandHash. */
  senderNonce: bigint;
  /** keccak256(abi.encode(recipientRand)), given by the server beforehand. */
  recipientRandHash: string;
  /** Unix seconds after which it cannot be redeemed. */
  expiration: bigint;
  /** Free 32 bytes: the session the ticket pays for. */
  auxData: string;
}

/** The domain of tickets: the TicketBroker contract on `chainId` verifies and pays them. */
export function ticketDomain(chainId: bigint, broker: string): TypedDataDomain {
  return { name: TICKET_DOMAIN_NAME, version: DOMAIN_VERSION, chainId, verifyingContract: broker };
}

const U256 = (v: bigint, field: string): void => {
  if (v < 0n || v >= TWO_POW_256) throw new InvalidArgumentError(`ticket.${field} ${v} must be in [0, 2^256)`);
};
const B32 = (v: string, field: string): void => {
  if (!isHexString(v, 32)) throw new InvalidArgumentError(`ticket.${field} must be 32 bytes of hex, got ${v.slice(0, 80)}`);
};

/** Checks every field's range and format; returns the ticket with checksummed addresses. */
export function checkedTicket(t: Ticket): Ticket {
  U256(t.faceValue, "faceValue");
  U256(t.winProb, "winProb");
  U256(t.senderNonce, "senderNonce");
  if (t.faceValue === 0n) throw new InvalidArgumentError("ticket.faceValue must be positive");
  if (t.winProb === 0n) throw new InvalidArgumentError("ticket.winProb must be positive (it could never win)");
  if (t.expiration < 0n || t.expiration >= 1n << 64n) throw new InvalidArgumentError(`ticket.expiration ${t.expiration} must fit in 64 bits`);
  B32(t.recipientRandHash, "recipientRandHash");
  B32(t.auxData, "auxData");
  let recipient: string;
  let sender: string;
  try {
    recipient = getAddress(t.recipient);
    sender = getAddress(t.sender);
  } catch {
    throw new InvalidArgumentError(`ticket.recipient ${t.recipient} and ticket.sender ${t.sender} must be addresses`);
  }
  return { ...t, recipient, sender };
}

const TICKET_TYPEHASH = typeHashOf(TICKET_TYPES, "Ticket");

/**
 * The ticket hash: its EIP-712 digest, equal to `TicketBroker.ticketHash` (and to ethers'
 * TypedDataEncoder.hash). Encoded word by word, every field being a static type: a client signs,
 * and each priced server checks, one ticket per server and step.
 */
export function ticketHash(domain: TypedDataDomain, t: Ticket): string {
  const v = checkedTicket(t);
  const words = new Uint8Array(9 * 32);
  words.set(TICKET_TYPEHASH, 0);
  words.set(getBytes(v.recipient), 32 + 12); // addresses: left-padded to 32 bytes
  words.set(getBytes(v.sender), 64 + 12);
  words.set(getBytes(toBeHex(v.faceValue, 32)), 96);
  words.set(getBytes(toBeHex(v.winProb, 32)), 128);
  words.set(getBytes(toBeHex(v.senderNonce, 32)), 160);
  words.set(getBytes(v.recipientRandHash), 192);
  words.set(getBytes(toBeHex(v.expiration, 32)), 224);
  words.set(getBytes(v.auxData), 256);
  return typedDataDigest(domain, keccak256Of(words));
}

/** Signs `t` with the client's raw key, synchronously (inside the ledger's "reserve nonce, sign" step). */
export function signTicketSync(key: SigningKey, domain: TypedDataDomain, t: Ticket): string {
  return signDigest(key, ticketHash(domain, t));
}

/** Signs `t` with any ethers signer (a wallet, a node's account). */
export async function signTicket(signer: Signer, domain: TypedDataDomain, t: Ticket): Promise<string> {
  return signer.signTypedData(domain, TICKET_TYPES, checkedTicket(t));
}

/** The address that signed `t`; the signature must be canonical, as on chain. */
export function recoverTicketSigner(domain: TypedDataDomain, t: Ticket, signature: string): string {
  return recoverTicketHashSigner(ticketHash(domain, t), signature);
}

/** The address that signed the ticket of hash `hash` (its `ticketHash`), for a caller that needs the hash too. */
export function recoverTicketHashSigner(hash: string, signature: string): string {
  return recoverAddress(hash, canonicalSignature(signature));
}

/** The commitment a server gives before tickets are signed: keccak256(abi.encode(uint256 rand)). */
export function recipientRandHash(recipientRand: bigint): string {
  U256(recipientRand, "recipientRand");
  return keccak256(AbiCoder.defaultAbiCoder().encode(["uint256"], [recipientRand]));
}

/** Whether the ticket with hash `hash` wins with `recipientRand`: `TicketBroker.isWinningTicket`. */
export function isWinningTicket(hash: string, recipientRand: bigint, winProb: bigint): boolean {
  if (winProb === CERTAIN_WIN_PROB) return true;
  const draw = BigInt(keccak256(AbiCoder.defaultAbiCoder().encode(["bytes32", "uint256"], [hash, recipientRand])));
  return draw < winProb;
}

/** Expected value of a ticket times 2^256 (exact integer arithmetic): faceValue · P(win) · 2^256. */
export function expectedValueScaled(faceValue: bigint, winProb: bigint): bigint {
  return faceValue * (winProb === CERTAIN_WIN_PROB ? TWO_POW_256 : winProb);
}

/**
 * Face value and win probability for a ticket worth exactly `owed` in expectation, with a face
 * value of about `targetFaceValue` (Livepeer: ≈ 100 × the gas cost of a redemption, in tokens).
 * The face value is owed · 2^j with 2^j the largest power of two not above targetFaceValue / owed,
 * and the probability exactly 2^-j, so faceValue · p = owed with no rounding (between ½ and 1 × the
 * target). When owed is at least the target, the ticket is certain and its face value is `owed`.
 */
export function ticketTerms(owed: bigint, targetFaceValue: bigint): { faceValue: bigint; winProb: bigint } {
  if (owed <= 0n) throw new InvalidArgumentError(`a ticket must pay a positive amount, got ${owed}`);
  if (targetFaceValue <= 0n) throw new InvalidArgumentError(`targetFaceValue must be positive, got ${targetFaceValue}`);
  let j = 0;
  while (j < 255 && owed << BigInt(j + 1) <= targetFaceValue) j++;
  if (j === 0) return { faceValue: owed, winProb: CERTAIN_WIN_PROB };
  return { faceValue: owed << BigInt(j), winProb: TWO_POW_256 >> BigInt(j) };
}

/**
 * The id under which a client's broker deposit stands where a channel id would (the session binding,
 * PaymentDue): the sender's address left-padded to 32 bytes. Bindings signed with it are under the
 * ticket domain, so they can never be mistaken for a channel's.
 */
export function ticketAccountId(sender: string): string {
  return zeroPadValue(getAddress(sender), 32).toLowerCase();
}
