import { Command, InvalidArgumentError, Option } from "commander";

/** How the devnet's cheating server cheats (scripts/devnet/faultyShard.ts; `withhold`: its store withholds steps). */
export const CHEAT_KINDS = ["noise", "skip", "fewerLayers", "otherWeights", "lowerPrecision", "withhold"] as const;
export type CheatKind = (typeof CHEAT_KINDS)[number];

/** Which node `npm start` runs when no --rpc is given. */
export const CHAIN_KINDS = ["hardhat", "anvil"] as const;
export type ChainKind = (typeof CHAIN_KINDS)[number];

/** What `startDevnet` starts, and where. Every field has a default (DEVNET_DEFAULTS). */
export interface DevnetOptions {
  /** An external JSON-RPC node (chain id 31337, dev account #0 funded, or EFED_DEPLOYER_KEY) instead of a local one. */
  rpc?: string;
  /** The local node: Hardhat's (`hardhat node`) or anvil; --state always uses anvil (Hardhat's node keeps no state). */
  chain: ChainKind;
  /** Port of the local node on 127.0.0.1 (0: any free port). */
  chainPort: number;
  /** Port of the OpenAI-compatible gateway on 127.0.0.1 (0: any free port). */
  gatewayPort: number;
  /** Directory that keeps chain, keys, wallet and stores across restarts; without it, a temporary one removed on stop. */
  state?: string;
  /** Adds a fifth server, on the second half of the layers and cheapest, that cheats this way. */
  cheater?: CheatKind;
  /** Runs the demo generation (paid, verified) before saying ready. */
  demo: boolean;
  /** Writes the devnet's URLs, addresses, process ids and ports here (JSON) once ready. */
  readyFile?: string;
  /** Milliseconds between blocks the devnet asks its node to mine (audit seeds and dispute periods need blocks); 0: none. */
  mineEveryMs: number;
  /** Milliseconds a started process gets to become ready. */
  startTimeoutMs: number;
  /** Milliseconds a process gets to exit after SIGTERM before it is killed. */
  stopGraceMs: number;
  /** Where progress lines go (default: stdout). */
  log?: (line: string) => void;
  /** Aborts a start under way (Ctrl-C while starting): what started is stopped and the start rejects. */
  signal?: AbortSignal;
}

export const DEVNET_DEFAULTS = {
  chain: "hardhat",
  chainPort: 8545,
  gatewayPort: 8080,
  demo: true,
  mineEveryMs: 1_000,
  startTimeoutMs: 60_000,
  stopGraceMs: 8_000,
} as const satisfies Partial<DevnetOptions>;

function portNumber(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n > 65_535) throw new InvalidArgumentError(`"${value}" is not a port number (0..65535; 0: any free port).`);
  return n;
}

function milliseconds(min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || n < min) throw new InvalidArgumentError(`"${value}" is not a whole number of milliseconds >= ${min}.`);
    return n;
  };
}

/** The `npm start` command line (parsed with commander, as bin/efed is). */
export function devnetCommand(): Command {
  const d = DEVNET_DEFAULTS;
  return new Command("npm start --")
    .description(
      "the whole eFed network on this machine: a chain with the contracts, the shipped model and a compressed variant registered, " +
        "four staked servers, verifiers, a funded wallet and the OpenAI-compatible gateway; Ctrl-C stops everything",
    )
    .option("--rpc <url>", "use this JSON-RPC node (chain 31337) instead of starting one")
    .addOption(new Option("--chain <node>", "the node started when no --rpc is given (--state always uses anvil)").choices(CHAIN_KINDS).default(d.chain))
    .option("--chain-port <port>", "port of the started node on 127.0.0.1 (0: any free port)", portNumber, d.chainPort)
    .option("--gateway-port <port>", "port of the OpenAI-compatible gateway on 127.0.0.1 (0: any free port)", portNumber, d.gatewayPort)
    .option("--state <dir>", "keep chain, keys, wallet and stores in DIR across restarts (default: a temporary directory removed on stop)")
    .addOption(new Option("--cheater <kind>", "add a server that cheats this way; the verifier catches it and it is slashed").choices(CHEAT_KINDS))
    .option("--no-demo", "skip the demo generation")
    .option("--ready-file <file>", "write the URLs, addresses, process ids and ports here (JSON) once ready")
    .option("--mine-every-ms <ms>", "ask the node for a block this often (audit seeds and dispute periods need blocks; 0: never)", milliseconds(0), d.mineEveryMs)
    .option("--start-timeout-ms <ms>", "time each started process gets to become ready", milliseconds(1), d.startTimeoutMs)
    .option("--stop-grace-ms <ms>", "time each process gets to exit after SIGTERM before it is killed", milliseconds(1), d.stopGraceMs)
    .showHelpAfterError();
}
