import { Signature, keccak256, parseEther, toUtf8Bytes } from "ethers";
import type { HardhatEthers, HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/types";
import { DEVNET_PARAMS, deployProtocol, type Protocol } from "../../scripts/lib/deployProtocol.js";
import { PERMIT_TYPES } from "../../protocol/eip712.js";

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
