/**
 * Deploys the eFed contracts to any EVM JSON-RPC node and writes their addresses to deployments/<chainId>.json.
 *
 *   npm run deploy -- --rpc URL [--params NAME|FILE] [--admin 0x…] [--registrar 0x…]
 *                     [--dispute-operator 0x…] [--mint-to 0x…,0x… --mint 10000] [--force-params]
 *
 * Parameters come from scripts/params/NAME.json (default devnet; see docs/deploy.md). The deployer
 * key comes from EFED_DEPLOYER_KEY; without it, on chain 31337 (Hardhat node, anvil) the node's
 * first unlocked account is used. With --admin, every governance role goes to that address (a
 * multisig or timelock) and the deployer renounces its own; the token's minter is what the
 * parameter file says ("deployer" is a devnet faucet, "admin", or "none": supply fixed).
 */
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command, InvalidArgumentError as CommanderArgError } from "commander";
import { JsonRpcProvider, Wallet, getAddress, parseEther, type Signer } from "ethers";
import { describeChainError } from "../protocol/contractErrors.js";
import { handOverRoles, rolesHeld, settleToken } from "./lib/adminHandoff.js";
import { deployProtocol, protocolAddresses } from "./lib/deployProtocol.js";
import { ParamsFileError, readNetworkParams } from "./lib/deployParams.js";
import { SequentialSigner } from "./lib/sequentialSigner.js";

/** Chain id of local development nodes (Hardhat node, anvil): the only chain devnet parameters are for by default. */
const DEVNET_CHAIN_ID = 31337n;

function parseAddressList(value: string): string[] {
  return value.split(",").map((a) => {
    try {
      return getAddress(a.trim());
    } catch {
      throw new CommanderArgError(`"${a}" is not an address`);
    }
  });
}

const program = new Command()
  .name("deploy")
  .description("Deploy the eFed contracts and write their addresses to deployments/<chainId>.json")
  .option("--rpc <url>", "JSON-RPC endpoint of the chain", "http://127.0.0.1:8545")
  .option("--params <name|file>", "parameter file: NAME for scripts/params/NAME.json, or a path", "devnet")
  .option("--admin <address>", "gets every governance role (multisig or timelock); the deployer renounces its own. Required off devnet", (v) => parseAddressList(v)[0])
  .option("--registrar <address>", "gets the model registry's REGISTRAR_ROLE (default: --admin)", (v) => parseAddressList(v)[0])
  .option("--dispute-operator <address>", "address granted the slasher/recorder/rewarder roles", (v) => parseAddressList(v)[0])
  .option("--mint-to <addresses>", "devnet faucet: comma-separated addresses to mint test tokens to", parseAddressList, [])
  .option("--mint <tokens>", "devnet faucet: whole tokens minted to each --mint-to address", "10000")
  .option("--force-params", "deploy even though the chain id is not one the parameter file lists")
  .option("--out-dir <dir>", "where to write <chainId>.json", join(dirname(fileURLToPath(import.meta.url)), "..", "deployments"))
  .parse();

const opts = program.opts<{
  rpc: string;
  params: string;
  admin?: string;
  registrar?: string;
  disputeOperator?: string;
  mintTo: string[];
  mint: string;
  forceParams?: boolean;
  outDir: string;
}>();

async function main(): Promise<void> {
  const network = readNetworkParams(opts.params);
  const provider = new JsonRpcProvider(opts.rpc, undefined, { staticNetwork: true, cacheTimeout: -1 });
  try {
    const { chainId } = await provider.getNetwork();
    if (!network.chainIds.includes(chainId) && opts.forceParams !== true) {
      throw new ParamsFileError(
        `${network.file} ("${network.name}") is for chain ${network.chainIds.join(", ")}; ${opts.rpc} is chain ${chainId}. ` +
          (network.devnet ? "Devnet parameters (short periods, a faucet) must not reach a chain with real value: " : "") +
          "write a parameter file for this chain (docs/deploy.md), or pass --force-params if you mean it",
      );
    }
    if (opts.mintTo.length > 0 && !network.devnet) {
      throw new ParamsFileError(`--mint-to is a devnet faucet; on "${network.name}" list the allocations in ${network.file} (token.allocations)`);
    }
    if (opts.admin === undefined && !network.devnet) throw new ParamsFileError(`--admin is required with "${network.name}": name the multisig or timelock that governs the contracts`);

    let inner: Signer;
    const key = process.env.EFED_DEPLOYER_KEY;
    if (key !== undefined && key !== "") inner = new Wallet(key, provider);
    else if (chainId === DEVNET_CHAIN_ID) inner = await provider.getSigner(0);
    else throw new Error(`EFED_DEPLOYER_KEY is not set and chain ${chainId} is not a local devnet (31337)`);
    const deployer = new SequentialSigner(inner);
    const deployerAddress = await deployer.getAddress();
    const admin = opts.admin ?? deployerAddress;
    const registrar = opts.registrar ?? admin;
    const startBlock = await provider.getBlockNumber();

    const protocol = await deployProtocol(deployer, network.protocol, opts.disputeOperator);
    const faucet = opts.mintTo.map((to) => ({ to, amountWei: parseEther(opts.mint) }));
    const minter = await settleToken(protocol.token, [...network.token.allocations, ...faucet], network.token.minter, admin);
    const moves = await handOverRoles(protocol, deployerAddress, admin, registrar);
    const kept = await rolesHeld(protocol, deployerAddress);

    const addresses = await protocolAddresses(protocol);
    const record = {
      chainId: chainId.toString(),
      params: network.name,
      deployer: deployerAddress,
      admin,
      registrar,
      tokenMinter: minter,
      block: startBlock,
      contracts: addresses,
    };
    await mkdir(opts.outDir, { recursive: true });
    const file = join(opts.outDir, `${chainId}.json`);
    await writeFile(file, JSON.stringify(record, null, 2) + "\n");
    console.log(`deployed to chain ${chainId} with "${network.name}" parameters; addresses in ${file}`);
    for (const [name, address] of Object.entries(addresses)) console.log(`  ${name.padEnd(12)} ${address}`);
    for (const m of moves) console.log(`  ${m.contract}.${m.role} -> ${m.to}`);
    console.log(
      kept.length === 0
        ? `  the deployer ${deployerAddress} holds no role any more`
        : `  the deployer ${deployerAddress} keeps ${kept.join(", ")}${network.devnet ? " (devnet)" : ""}`,
    );
    const zero = "0x0000000000000000000000000000000000000000";
    console.log(
      minter === zero
        ? "  token: no one can mint any more (supply fixed)"
        : `  token: ${minter} may mint without limit${minter === deployerAddress && network.devnet ? " (devnet faucet)" : ""}`,
    );
  } finally {
    provider.destroy();
  }
}

main().catch((err: unknown) => {
  console.error(`deploy failed: ${err instanceof ParamsFileError ? err.message : describeChainError(err)}`);
  process.exitCode = 1;
});
