/**
 * Deploys the eFed contracts to a chain and writes their addresses to deployments/<chainId>.json.
 *
 *   npm run deploy -- --rpc http://127.0.0.1:8545 [--dispute-operator 0x…] [--mint-to 0x…,0x… --mint 10000]
 *
 * The deployer key comes from the EFED_DEPLOYER_KEY environment variable; without it, on a local
 * Hardhat node (chain id 31337) the node's first unlocked account is used.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command, InvalidArgumentError as CommanderArgError } from "commander";
import { JsonRpcProvider, Wallet, getAddress, parseEther, type Signer } from "ethers";
import { DEVNET_PARAMS, deployProtocol, protocolAddresses } from "./lib/deployProtocol.js";

const HARDHAT_CHAIN_ID = 31337n;

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
  .option("--dispute-operator <address>", "address granted the slasher/recorder/rewarder roles", (v) => parseAddressList(v)[0])
  .option("--mint-to <addresses>", "comma-separated addresses to mint test tokens to", parseAddressList, [])
  .option("--mint <tokens>", "whole tokens minted to each --mint-to address", "10000")
  .option("--out-dir <dir>", "where to write <chainId>.json", join(dirname(fileURLToPath(import.meta.url)), "..", "deployments"))
  .parse();

const opts = program.opts<{ rpc: string; disputeOperator?: string; mintTo: string[]; mint: string; outDir: string }>();

async function main(): Promise<void> {
  const provider = new JsonRpcProvider(opts.rpc, undefined, { staticNetwork: true });
  const { chainId } = await provider.getNetwork();
  let deployer: Signer;
  const key = process.env.EFED_DEPLOYER_KEY;
  if (key !== undefined && key !== "") deployer = new Wallet(key, provider);
  else if (chainId === HARDHAT_CHAIN_ID) deployer = await provider.getSigner(0);
  else throw new Error(`EFED_DEPLOYER_KEY is not set and chain ${chainId} is not a local Hardhat node`);

  const protocol = await deployProtocol(deployer, DEVNET_PARAMS, opts.disputeOperator);
  const mintAmount = parseEther(opts.mint);
  for (const to of opts.mintTo) await (await protocol.token.mint(to, mintAmount)).wait();

  const addresses = await protocolAddresses(protocol);
  const record = {
    chainId: chainId.toString(),
    deployer: await deployer.getAddress(),
    block: await provider.getBlockNumber(),
    contracts: addresses,
  };
  await mkdir(opts.outDir, { recursive: true });
  const file = join(opts.outDir, `${chainId}.json`);
  await writeFile(file, JSON.stringify(record, null, 2) + "\n");
  console.log(`deployed to chain ${chainId}; addresses in ${file}`);
  for (const [name, address] of Object.entries(addresses)) console.log(`  ${name.padEnd(12)} ${address}`);
  provider.destroy();
}

main().catch((err: unknown) => {
  console.error(`deploy failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
