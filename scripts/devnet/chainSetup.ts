import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { NonceManager, Wallet, type JsonRpcProvider } from "ethers";
import { readManifest, variantIdOf } from "../../engine/model/manifest.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { connectOperator, type OperatorChain } from "../../node/chain/operatorChain.js";
import { registerServer } from "../../node/chain/serverRegistration.js";
import { registerVariant } from "../../node/chain/variantRegistration.js";
import { EFedToken__factory } from "../../types/ethers-contracts/index.js";
import { deployProtocol, protocolAddresses, type ProtocolAddresses } from "../lib/deployProtocol.js";
import { SequentialSigner } from "../lib/sequentialSigner.js";
import { DEVNET_RUN_PARAMS, SERVER_STAKE } from "./params.js";

const root = fileURLToPath(new URL("../..", import.meta.url));

/** Hardhat's and anvil's development account #0 (a public test key, funded only on local nodes): the devnet's deployer. */
const DEV_ACCOUNT_0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const DEVNET_CHAIN_ID = 31337n;

/** The devnet's deployer: $EFED_DEPLOYER_KEY, else development account #0 (which only a development node funds). */
export function deployerKey(provider: JsonRpcProvider): Wallet {
  const key = process.env.EFED_DEPLOYER_KEY;
  return new Wallet(key !== undefined && key !== "" ? key : DEV_ACCOUNT_0, provider);
}

/** A key kept in `file` (hex, mode 0600): read when it exists, else created. Devnet keys only. */
export function devnetKey(file: string): Wallet {
  if (existsSync(file)) return new Wallet(readFileSync(file, "utf8").trim());
  mkdirSync(dirname(file), { recursive: true });
  const wallet = new Wallet(Wallet.createRandom().privateKey);
  writeFileSync(file, `${wallet.privateKey}\n`, { mode: 0o600, flag: "wx" });
  return wallet;
}

/**
 * The contracts of `deploymentFile` when that file exists and the chain still has them (a devnet
 * restarted with --state); otherwise the protocol deployed afresh with the devnet's parameters and
 * its addresses written there, in the format `npm run deploy` writes.
 */
export async function deployOrReuse(deployer: Wallet, deploymentFile: string): Promise<{ addresses: ProtocolAddresses; reused: boolean }> {
  const provider = deployer.provider as JsonRpcProvider;
  const chainId = (await provider.getNetwork()).chainId;
  if (chainId !== DEVNET_CHAIN_ID) throw new Error(`the devnet runs on a development chain (id ${DEVNET_CHAIN_ID}); this node is chain ${chainId}`);
  if (existsSync(deploymentFile)) {
    const record = JSON.parse(readFileSync(deploymentFile, "utf8")) as { contracts: ProtocolAddresses };
    const codes = await Promise.all(Object.values(record.contracts).map((a) => provider.getCode(a)));
    if (codes.every((c) => c !== "0x")) return { addresses: record.contracts, reused: true };
  }
  const block = await provider.getBlockNumber();
  const protocol = await deployProtocol(new SequentialSigner(deployer), DEVNET_RUN_PARAMS);
  const addresses = await protocolAddresses(protocol);
  const record = {
    chainId: chainId.toString(),
    params: "devnet (npm start: scripts/devnet/params.ts)",
    deployer: deployer.address,
    admin: deployer.address,
    registrar: deployer.address,
    tokenMinter: deployer.address,
    block,
    contracts: addresses,
  };
  mkdirSync(dirname(deploymentFile), { recursive: true });
  writeFileSync(deploymentFile, JSON.stringify(record, null, 2) + "\n");
  return { addresses, reused: false };
}

/** `efed operator`'s connection for `wallet` on the devnet's deployment. The caller destroys its provider. */
export function operatorOn(rpc: string, deploymentFile: string, wallet: Wallet): Promise<OperatorChain> {
  return connectOperator({ rpc, deploymentFile, root, wallet });
}

/** Registers the variant of each model directory (as `efed model register` does); returns their ids. */
export async function registerVariants(registrar: OperatorChain, dirs: readonly string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const dir of dirs) {
    const manifest = readManifest(dir);
    if (manifest === undefined) throw new Error(`${dir} has no manifest (efed manifest --model ${dir})`);
    const model = ModelDirectory.open(dir);
    const numLayers = model.config.numLayers;
    model.close();
    const variantId = variantIdOf(manifest);
    await registerVariant(registrar, { variantId, numLayers, manifestURI: `file://${dir}` });
    ids.push(variantId);
  }
  return ids;
}

/**
 * Tops each account up to its `eth` of gas money and `tokens` of EFED (the deployer is the devnet's
 * minter). The transactions go out together (one nonce sequence) and are awaited together.
 */
export async function fundAll(deployer: Wallet, token: string, accounts: readonly { address: string; eth: bigint; tokens: bigint }[]): Promise<void> {
  const provider = deployer.provider!;
  const signer = new NonceManager(deployer);
  const efed = EFedToken__factory.connect(token, signer);
  const sent: Promise<unknown>[] = [];
  for (const a of accounts) {
    const [gas, held] = await Promise.all([provider.getBalance(a.address), efed.balanceOf(a.address)]);
    // not awaited here: the nonce manager numbers them in call order, the node mines them as they fill in
    if (gas < a.eth) sent.push(signer.sendTransaction({ to: a.address, value: a.eth - gas }).then((tx) => tx.wait()));
    if (held < a.tokens) sent.push(efed.mint(a.address, a.tokens - held).then((tx) => tx.wait()));
  }
  await Promise.all(sent);
}

/**
 * Stakes and registers a server through the operator logic (`efed operator register-server`):
 * deposits what its bonded stake lacks of SERVER_STAKE, then registers layers [first, last) of
 * `variantId` at `endpoint` and `priceWei` per token.
 */
export async function stakeServer(c: OperatorChain, r: { variantId: string; first: number; last: number; endpoint: string; priceWei: bigint }): Promise<void> {
  const bonded = (await c.staking.operator(c.address)).bonded;
  await registerServer(c, {
    variantId: r.variantId,
    firstLayer: r.first,
    lastLayer: r.last,
    endpoint: r.endpoint,
    pricePerTokenWei: r.priceWei,
    depositWei: bonded >= SERVER_STAKE ? 0n : SERVER_STAKE - bonded,
  });
}
