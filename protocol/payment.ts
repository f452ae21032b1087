import { TypedDataEncoder, type SigningKey, type TypedDataDomain, type TypedDataField } from "ethers";
import { canonicalSignature } from "./eip712.js";
import { recoverAddress, signDigest } from "./secp256k1.js";

/**
 * Ties a session on one server to the payment channel that pays for it. Signed by the channel's
 * client under the voucher domain (chain and PaymentChannels contract), over the connection's
 * challenge: a binding cannot be replayed on another connection, server, chain or contract, and
 * nobody but the channel's client can charge a session to the channel. Never verified on chain.
 */
export const BINDING_TYPES: Record<string, TypedDataField[]> = {
  ChannelBinding: [
    { name: "channelId", type: "bytes32" },
    { name: "sessionId", type: "bytes32" },
    { name: "server", type: "address" },
    { name: "challenge", type: "bytes32" },
  ],
};

export interface ChannelBinding {
  channelId: string;
  sessionId: string;
  /** The server's receipt-signing address. */
  server: string;
  /** The connection's challenge (ServerInfo.challenge). */
  challenge: string;
}

export function bindingDigest(domain: TypedDataDomain, b: ChannelBinding): string {
  return TypedDataEncoder.hash(domain, BINDING_TYPES, b);
}

/** Signs a binding with the client's key (synchronously: no other signing may interleave). */
export function signBinding(key: SigningKey, domain: TypedDataDomain, b: ChannelBinding): string {
  return signDigest(key, bindingDigest(domain, b));
}

/** The address that signed binding `b`; the signature must be canonical. */
export function recoverBindingSigner(domain: TypedDataDomain, b: ChannelBinding, signature: string): string {
  return recoverAddress(bindingDigest(domain, b), canonicalSignature(signature));
}

/** What `tokens` tokens cost at `pricePerToken` (token base units): exactly their product, prefill and decode alike. */
export function stepCost(pricePerToken: bigint, tokens: number): bigint {
  return pricePerToken * BigInt(tokens);
}
