import { Signature, keccak256, parseEther, toUtf8Bytes } from "ethers";
import type { HardhatEthers, HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/types";
import { DEVNET_PARAMS, deployProtocol, type Protocol } from "../../scripts/lib/deployProtocol.js";
import { PERMIT_TYPES } from "../../protocol/eip712.js";
import type { MerkleTree } from "../../protocol/merkle.js";
import type { Receipt } from "../../protocol/receipt.js";

export const VARIANT = keccak256(toUtf8Bytes("test manifest: 8-layer llama"));
export const NUM_LAYERS = 8;
export const MANIFEST_URI = "ipfs://manifest-8-layer";
export const PARAMS = DEVNET_PARAMS;
export const MINTED = parseEther("100000");

export interface World extends Protocol {
  admin: HardhatEthersSigner;
  server: HardhatEthersSigner;
  server2: HardhatEthersSigner;
  verifier: HardhatEthersSigner;
  client: HardhatEthersSigner;
  slasher: HardhatEthersSigner;
  stranger: HardhatEthersSigner;
  chainId: bigint;
}

/**
 * The protocol deployed with devnet parameters, one 8-layer variant registered, tokens minted to
 * every actor, and `slasher` holding the dispute roles.
 */
export function worldFixture(ethers: HardhatEthers): () => Promise<World> {
  return async function world(): Promise<World> {
    const [admin, server, server2, verifier, client, slasher, stranger] = await ethers.getSigners();
    if (admin === undefined || server === undefined || server2 === undefined || verifier === undefined) {
      throw new Error("hardhat network has too few accounts");
    }
    if (client === undefined || slasher === undefined || stranger === undefined) {
      throw new Error("hardhat network has too few accounts");
    }
    const protocol = await deployProtocol(admin, PARAMS, slasher.address);
    for (const who of [server, server2, verifier, client, stranger]) {
      await protocol.token.mint(who.address, MINTED);
    }
    await protocol.registry.registerVariant(VARIANT, NUM_LAYERS, MANIFEST_URI);
    const { chainId } = await ethers.provider.getNetwork();
    return { ...protocol, admin, server, server2, verifier, client, slasher, stranger, chainId };
  };
}

/** Approves and deposits `amount` of `who`'s tokens as stake. */
export async function stake(w: World, who: HardhatEthersSigner, amount: bigint): Promise<void> {
  await w.token.connect(who).approve(await w.staking.getAddress(), amount);
  await w.staking.connect(who).deposit(amount);
}

/** Stakes the minimum for `[first, last)` and registers `who` as a server of VARIANT. */
export async function registerServer(
  w: World,
  who: HardhatEthersSigner,
  first = 0,
  last = NUM_LAYERS,
  price = 10n,
): Promise<void> {
  await stake(w, who, await w.staking.minServerStake(last - first));
  await w.staking.connect(who).registerServer(VARIANT, first, last, `ws://127.0.0.1:${9000 + first}`, price);
}

/** An EIP-2612 permit signature for `spender`. */
export async function signPermit(
  w: World,
  owner: HardhatEthersSigner,
  spender: string,
  value: bigint,
  deadline: bigint,
): Promise<Signature> {
  const nonce = await w.token.nonces(owner.address);
  const domain = { name: "eFed", version: "1", chainId: w.chainId, verifyingContract: await w.token.getAddress() };
  const sig = await owner.signTypedData(domain, PERMIT_TYPES, { owner: owner.address, spender, value, nonce, deadline });
  return Signature.from(sig);
}

/**
 * The argument pair of `AuditLedger.recordPasses` for leaves `indices` of a batch whose tree is
 * `tree` over `leaves`: the leaves in ascending order (as the contract requires), each with its proof.
 */
export function passesOf(tree: MerkleTree, leaves: readonly string[], indices: readonly number[]): { leaves: string[]; proofs: string[][] } {
  const sorted = [...indices].sort((a, b) => (BigInt(leaves[a]!) < BigInt(leaves[b]!) ? -1 : 1));
  return { leaves: sorted.map((i) => leaves[i]!), proofs: sorted.map((i) => tree.proof(i)) };
}

/** Lets `slasher` record paid work for `server` (standing in for redeemed channels) and funds the reward pool. */
export async function fundAudits(w: World, server: string, paidWork: bigint, pool: bigint): Promise<void> {
  await w.trust.grantRole(await w.trust.PAYMENTS_ROLE(), w.slasher.address);
  await w.trust.connect(w.slasher).recordPayment(server, paidWork);
  await w.token.mint(await w.rewards.getAddress(), pool);
}

/** Mints tokens to each of `who` not yet funded by the world, stakes the verifier minimum, registers, and approves Disputes to take bonds. */
export async function joinAsVerifiers(w: World, who: readonly HardhatEthersSigner[]): Promise<void> {
  const funded = new Set([w.server, w.server2, w.verifier, w.client, w.stranger].map((s) => s.address));
  for (const v of who) {
    if (!funded.has(v.address)) await w.token.mint(v.address, MINTED);
    await stake(w, v, PARAMS.stake.verifierMinStake);
    await w.staking.connect(v).registerVerifier();
    await w.token.connect(v).approve(await w.disputes.getAddress(), MINTED);
  }
}

/** `n` receipts of one session `label` of `server` for VARIANT layers [0, 4), steps 0..n-1, distinct hashes per step. */
export function sessionReceipts(server: string, label: string, n: number): Receipt[] {
  return Array.from({ length: n }, (_, step) => ({
    sessionId: keccak256(toUtf8Bytes(label)),
    step: BigInt(step),
    firstLayer: 0,
    lastLayer: 4,
    variantId: VARIANT,
    inputHash: keccak256(toUtf8Bytes(`${label}: input of step ${step}`)),
    outputHash: keccak256(toUtf8Bytes(`${label}: output of step ${step}`)),
    tokens: 1,
    server,
  }));
}
