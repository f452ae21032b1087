import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseEther } from "ethers";
import { afterAll, describe, expect, it } from "vitest";
import { readNetworkParams } from "../../scripts/lib/deployParams.js";
import { DEVNET_PARAMS } from "../../scripts/lib/deployProtocol.js";
import { scratchDir } from "../engine/helpers.js";

const scratch = scratchDir();
afterAll(() => scratch.cleanup());
const HOLDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

/** Writes `doc` (the shipped testnet example with `patch` applied) to a scratch file and returns its path. */
function paramsFile(name: string, patch: (doc: Record<string, unknown>) => void): string {
  const doc = readRaw("example-testnet") as Record<string, unknown>;
  patch(doc);
  const file = join(scratch.dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(doc));
  return file;
}
function readRaw(name: string): unknown {
  return JSON.parse(readFileSync(new URL(`../../scripts/params/${name}.json`, import.meta.url), "utf8"));
}

describe("readNetworkParams", () => {
  it("reads the shipped devnet file as exactly DEVNET_PARAMS, for chain 31337, with the deployer as faucet", () => {
    const p = readNetworkParams("devnet");
    expect(p.protocol).toEqual(DEVNET_PARAMS);
    expect(p).toMatchObject({ name: "devnet", devnet: true, chainIds: [31337n], token: { minter: "deployer", allocations: [] } });
  });

  it("reads the testnet example: every field given, no faucet, amounts in tokens", () => {
    const p = readNetworkParams("example-testnet");
    expect(p).toMatchObject({ devnet: false, chainIds: [11155111n], token: { minter: "none" } });
    expect(p.protocol.stake.serverBaseStake).toBe(parseEther("10000"));
    expect(p.protocol.trust.threshold).toBe(parseEther("0.4"));
    expect(p.protocol.timing.unbondingDelay).toBe(1_209_600n);
  });

  it("parses allocations and checks their addresses", () => {
    const ok = paramsFile("alloc", (d) => ((d.token as Record<string, unknown>).allocations = [{ to: HOLDER.toLowerCase(), amount: "250.5 EFED" }]));
    expect(readNetworkParams(ok).token.allocations).toEqual([{ to: HOLDER, amountWei: parseEther("250.5") }]);
    const bad = paramsFile("badalloc", (d) => ((d.token as Record<string, unknown>).allocations = [{ to: "0xnope", amount: "1 EFED" }]));
    expect(() => readNetworkParams(bad)).toThrow(`${bad}: token.allocations[0].to is "0xnope"; expected an address`);
  });

  it("names the file and field of a missing, unknown or malformed parameter", () => {
    const missing = paramsFile("missing", (d) => delete ((d.protocol as Record<string, Record<string, unknown>>).stake!.verifierMinStake));
    expect(() => readNetworkParams(missing)).toThrow(`${missing}: protocol.stake.verifierMinStake is missing`);
    const unknown = paramsFile("unknown", (d) => ((d.protocol as Record<string, Record<string, unknown>>).stake!.serverStakePerLyer = "1 EFED"));
    expect(() => readNetworkParams(unknown)).toThrow(
      `${unknown}: protocol.stake.serverStakePerLyer is not a parameter (expected one of serverBaseStake, serverStakePerLayer, verifierMinStake)`,
    );
    const malformed = paramsFile("malformed", (d) => ((d.protocol as Record<string, Record<string, unknown>>).timing!.challengeWindow = "1 hour"));
    expect(() => readNetworkParams(malformed)).toThrow(
      `${malformed}: protocol.timing.challengeWindow is "1 hour"; expected an integer, "<amount> EFED" or "<fraction> WAD"`,
    );
  });

  it("refuses a deployer minter outside a devnet, and an unknown file", () => {
    const faucet = paramsFile("faucet", (d) => ((d.token as Record<string, unknown>).minter = "deployer"));
    expect(() => readNetworkParams(faucet)).toThrow(
      `${faucet}: token.minter is "deployer": a deployer key that can mint without limit is a devnet faucet only; use "admin" or "none"`,
    );
    expect(() => readNetworkParams("mainnet-typo")).toThrow(/^no parameter file .*scripts\/params\/mainnet-typo\.json/);
  });
});
