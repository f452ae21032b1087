import { parseEther } from "ethers";
import { DEVNET_DATA_REQUEST_PARAMS, DEVNET_PARAMS, type ProtocolParams } from "../lib/deployProtocol.js";
import type { CheatKind } from "./options.js";

/**
 * The devnet's protocol: the devnet parameters (scripts/lib/deployProtocol.ts) with periods short
 * enough to watch a whole dispute in a minute: a new server may be paid after 1 s of probation,
 * a committee of one (the contract never seats the challenger on its own dispute) votes within
 * 15 s and reveals within 30 s, a server asked on chain for a step it withheld has 20 s to post
 * it, and every audited receipt counts on chain (AuditLedger samples 100 %).
 */
export const DEVNET_RUN_PARAMS: ProtocolParams = {
  ...DEVNET_PARAMS,
  timing: { ...DEVNET_PARAMS.timing, probationPeriod: 1n },
  disputes: { ...DEVNET_PARAMS.disputes, committeeSize: 1n, commitPeriod: 15n, revealPeriod: 30n },
  audits: { ...DEVNET_PARAMS.audits, sampleRatePpb: 1_000_000_000n },
  dataRequests: { ...DEVNET_DATA_REQUEST_PARAMS, responsePeriod: 20n },
};

/** A server of the devnet: its name (key and data directory), layers [first, last), price per token. */
export interface ServerPlan {
  name: string;
  first: number;
  last: number;
  priceTokens: string;
  cheat?: CheatKind;
}

/**
 * Four honest servers for a model of `numLayers` layers: every layer on two of them, so when one
 * fails the route has somewhere to go. The cheaper pair is the route the gateway prefers
 * (--prefer price); the cheater, cheapest of all on the second half, takes its place on that route.
 */
export function serverPlan(numLayers: number, cheat: CheatKind | undefined): ServerPlan[] {
  const half = Math.floor(numLayers / 2);
  const plan: ServerPlan[] = [
    { name: "server-1", first: 0, last: half, priceTokens: "0.001" },
    { name: "server-2", first: half, last: numLayers, priceTokens: "0.001" },
    { name: "server-3", first: 0, last: half, priceTokens: "0.0015" },
    { name: "server-4", first: half, last: numLayers, priceTokens: "0.0015" },
  ];
  if (cheat !== undefined) plan.push({ name: `cheater-${cheat}`, first: half, last: numLayers, priceTokens: "0.0005", cheat });
  return plan;
}

/** Every server stakes this much (the minimum for half the shipped model's layers is 1400): a slash of 1000 leaves it bonded. */
export const SERVER_STAKE = parseEther("2000");
/** Minted to each verifier: its minimum stake (500) and bonds for several disputes (200 each). */
export const VERIFIER_TOKENS = parseEther("2000");
/** Minted to the client wallet: channels of 100 000 tokens at the servers' prices hold 50 to 150 each. */
export const WALLET_TOKENS = parseEther("10000");
/** Gas money of every devnet account. */
export const ACCOUNT_ETH = parseEther("100");
