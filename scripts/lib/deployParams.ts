import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { getAddress, parseEther } from "ethers";
import { DEVNET_PARAMS, type ProtocolParams } from "./deployProtocol.js";

/** Folder of the shipped parameter files (`--params NAME` reads NAME.json from here). */
export const PARAMS_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "params");

/** Who may mint the token once the deploy is done. */
export type Minter = "deployer" | "admin" | "none";

/** A network's parameter file, validated. */
export interface NetworkParams {
  name: string;
  file: string;
  /** Chain ids this file is meant for; the deploy refuses any other chain unless forced. */
  chainIds: readonly bigint[];
  /** Devnet parameters (short periods, a faucet): never for a chain with real value. */
  devnet: boolean;
  protocol: ProtocolParams;
  token: { minter: Minter; allocations: readonly { to: string; amountWei: bigint }[] };
}

/** A parameter file is missing or wrong; the message names the file, the field and what was expected. */
export class ParamsFileError extends Error {}

/**
 * Reads `nameOrPath` (a file path, or NAME for scripts/params/NAME.json). The file mirrors
 * ProtocolParams field by field; every field is required unless `"base": "devnet"`, which takes the
 * missing ones from DEVNET_PARAMS. Values: integers (seconds, basis points, counts, base units) as
 * JSON numbers or digit strings, or 18-decimal amounts as "1000 EFED" (tokens) / "0.4 WAD" (fractions).
 */
export function readNetworkParams(nameOrPath: string): NetworkParams {
  const file = nameOrPath.endsWith(".json") || nameOrPath.includes("/") ? nameOrPath : join(PARAMS_DIR, `${nameOrPath}.json`);
  if (!existsSync(file)) throw new ParamsFileError(`no parameter file ${file}: give --params NAME (a file in ${PARAMS_DIR}) or a path to a .json file`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new ParamsFileError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  const fail = (field: string, what: string): never => {
    throw new ParamsFileError(`${file}: ${field} ${what}`);
  };
  if (!isObject(raw)) return fail("(top level)", "must be a JSON object");
  const known = new Set(["name", "chainIds", "devnet", "base", "protocol", "token", "$comment"]);
  for (const k of Object.keys(raw)) if (!known.has(k)) fail(k, `is not a known field (expected one of ${[...known].join(", ")})`);
  if (typeof raw.name !== "string" || raw.name === "") fail("name", "must be a non-empty string");
  if (typeof raw.devnet !== "boolean") fail("devnet", "must be true or false");
  if (!Array.isArray(raw.chainIds) || raw.chainIds.length === 0) fail("chainIds", "must be a non-empty list of chain ids");
  const chainIds = (raw.chainIds as unknown[]).map((c, i) => integer(c, `chainIds[${i}]`, fail));
  if (raw.base !== undefined && raw.base !== "devnet") fail("base", `is "${String(raw.base)}"; the only base is "devnet" (missing fields taken from DEVNET_PARAMS)`);
  const protocol = mergeParams(DEVNET_PARAMS, raw.protocol, "protocol", raw.base === "devnet", fail) as ProtocolParams;
  const token = tokenSection(raw.token, raw.devnet as boolean, fail);
  return { name: raw.name as string, file, chainIds, devnet: raw.devnet as boolean, protocol, token };
}

type Fail = (field: string, what: string) => never;

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Walks the DEVNET_PARAMS shape: every leaf is a bigint, parsed from the file's value at the same path. */
function mergeParams(template: unknown, value: unknown, path: string, fromBase: boolean, fail: Fail): unknown {
  if (typeof template === "bigint") {
    if (value === undefined) return fromBase ? template : fail(path, "is missing");
    return amount(value, path, fail);
  }
  if (!isObject(template)) return fail(path, "has an unexpected shape in DEVNET_PARAMS");
  if (value === undefined && fromBase) return template;
  if (!isObject(value)) return fail(path, "must be an object");
  for (const k of Object.keys(value)) {
    if (!(k in template)) fail(`${path}.${k}`, `is not a parameter (expected one of ${Object.keys(template).join(", ")})`);
  }
  return Object.fromEntries(Object.entries(template).map(([k, t]) => [k, mergeParams(t, value[k], `${path}.${k}`, fromBase, fail)]));
}

function integer(value: unknown, path: string, fail: Fail): bigint {
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return BigInt(value);
  if (typeof value === "string" && /^\d+$/.test(value)) return BigInt(value);
  return fail(path, `is ${JSON.stringify(value)}; expected a non-negative integer`);
}

/** An integer, or "<decimal> EFED" / "<decimal> WAD" (times 10^18). */
function amount(value: unknown, path: string, fail: Fail): bigint {
  if (typeof value === "string") {
    const m = /^(\d+(?:\.\d{1,18})?)\s*(EFED|WAD)$/.exec(value.trim());
    if (m !== null) return parseEther(m[1]!);
  }
  if (typeof value === "number" || (typeof value === "string" && /^\d+$/.test(value))) return integer(value, path, fail);
  return fail(path, `is ${JSON.stringify(value)}; expected an integer, "<amount> EFED" or "<fraction> WAD"`);
}

function tokenSection(value: unknown, devnet: boolean, fail: Fail): NetworkParams["token"] {
  if (!isObject(value)) return fail("token", 'must be an object { "minter": "deployer" | "admin" | "none", "allocations": [...] }');
  for (const k of Object.keys(value)) if (k !== "minter" && k !== "allocations") fail(`token.${k}`, "is not a known field (minter, allocations)");
  const minter = value.minter;
  if (minter !== "deployer" && minter !== "admin" && minter !== "none") {
    return fail("token.minter", `is ${JSON.stringify(minter)}; expected "deployer" (devnet faucet), "admin" or "none" (supply fixed after the allocations)`);
  }
  if (minter === "deployer" && !devnet) fail("token.minter", 'is "deployer": a deployer key that can mint without limit is a devnet faucet only; use "admin" or "none"');
  const list = value.allocations ?? [];
  if (!Array.isArray(list)) return fail("token.allocations", 'must be a list of { "to": ADDRESS, "amount": "<n> EFED" }');
  const allocations = list.map((a: unknown, i) => {
    const at = `token.allocations[${i}]`;
    if (!isObject(a)) return fail(at, 'must be { "to": ADDRESS, "amount": "<n> EFED" }');
    let to: string;
    try {
      to = getAddress(String(a.to));
    } catch {
      return fail(`${at}.to`, `is ${JSON.stringify(a.to)}; expected an address`);
    }
    return { to, amountWei: amount(a.amount, `${at}.amount`, fail) };
  });
  return { minter, allocations };
}
