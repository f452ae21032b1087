import { InvalidArgumentError, Option } from "commander";
import { parseUnits } from "ethers";

/** Commander parsers that reject bad flag values with a message naming the value and what was expected. */
export function integer(min: number, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`"${value}" is not an integer in ${min}..${max}.`);
    }
    return n;
  };
}

export function number(min: number, max = Infinity): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`"${value}" is not a number in [${min}, ${max}].`);
    }
    return n;
  };
}

/** A comma-separated list of integers >= min, e.g. "1,2,3". */
export function integerList(min: number): (value: string) => number[] {
  const one = integer(min);
  return (value) => {
    const parts = value.split(",");
    try {
      return parts.map((p) => one(p.trim()));
    } catch {
      throw new InvalidArgumentError(`"${value}" is not a comma-separated list of integers >= ${min}.`);
    }
  };
}

/** A decimal amount of tokens (18 decimals), e.g. "0.001", as token base units; 0 allowed (e.g. a price limit). */
export function tokenAmount(value: string): bigint {
  if (!/^\d+(\.\d{1,18})?$/.test(value.trim())) {
    throw new InvalidArgumentError(`"${value}" is not an amount of tokens (a decimal >= 0 with at most 18 decimals, e.g. 0.001).`);
  }
  return parseUnits(value.trim(), 18);
}

/** As `tokenAmount`, for an amount that must be more than 0 (a deposit, a spending limit). */
export function positiveTokenAmount(value: string): bigint {
  const v = tokenAmount(value);
  if (v === 0n) throw new InvalidArgumentError(`"${value}" must be a positive amount of tokens.`);
  return v;
}

/** A comma-separated list of ws:// or wss:// URLs. */
export function urlList(value: string): string[] {
  const urls = value.split(",").map((u) => u.trim());
  for (const u of urls) {
    if (!/^wss?:\/\/[^\s/]+/.test(u)) throw new InvalidArgumentError(`"${u}" is not a ws:// or wss:// URL (in "${value}").`);
  }
  return urls;
}

/** The route flags `generate`, `chat` and `gateway` share: an explicit route, or discovery on chain. */
export interface RouteFlags {
  route?: string[];
  spare?: string[];
  rpc?: string;
  deployment?: string;
  minTrust?: number;
  maxPrice?: bigint;
  prefer: "latency" | "price";
  explainRoute?: boolean;
  measureBudgetMs: number;
  maxFailovers: number;
}

/** The options behind RouteFlags, to add to a command. */
export function routeOptions(): Option[] {
  return [
    new Option("--route <urls>", "run the layers on these shard servers, in order (comma-separated ws:// URLs; with --rpc they are checked on chain, else standalone)").argParser(
      urlList,
    ),
    new Option("--spare <urls>", "with --route: servers that may replace a failed one (comma-separated ws:// URLs)").argParser(urlList),
    new Option("--rpc <url>", "find the route on chain among the servers registered for --model's variant (JSON-RPC URL); with --route, check and pay those"),
    new Option("--deployment <file>", "with --rpc: the deployment file (default deployments/<chainId>.json in the working directory)"),
    new Option("--min-trust <t>", "with --rpc: skip servers whose trust is below t in [0, 1] (θ on chain always applies)").argParser(number(0, 1)),
    new Option("--max-price <tokens>", "with --rpc: most the whole route may ask per token, in tokens (e.g. 0.001; default no limit)").argParser(tokenAmount),
    new Option("--prefer <what>", "with --rpc: what weighs ten times more when choosing the route").choices(["latency", "price"]).default("latency"),
    new Option("--explain-route", "print the servers considered, their measurements and why the route was chosen (stderr)"),
    new Option("--measure-budget-ms <ms>", "time the client spends measuring candidate servers (in parallel)").argParser(integer(1, 600_000)).default(3_000),
    new Option("--max-failovers <n>", "failovers one step may take before generation fails (0: none; needs --spare or --rpc)").argParser(integer(0, 100)).default(3),
  ];
}
