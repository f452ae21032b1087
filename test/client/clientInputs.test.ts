import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { InvalidArgumentError as CommanderArgumentError } from "commander";
import { parseEther } from "ethers";
import { afterAll, describe, expect, it } from "vitest";
import { positiveTokenAmount, tokenAmount } from "../../client/commands/options.js";
import { readClientDeployment } from "../../client/route/deploymentFile.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { scratchDir } from "../engine/helpers.js";

describe("token amounts (one parser for every flag)", () => {
  it("reads decimals to base units; 0 only where allowed", () => {
    expect(tokenAmount("0.001")).toBe(parseEther("0.001"));
    expect(tokenAmount(" 12 ")).toBe(parseEther("12"));
    expect(tokenAmount("0")).toBe(0n);
    expect(positiveTokenAmount("1.5")).toBe(parseEther("1.5"));
    expect(() => positiveTokenAmount("0.0")).toThrow(new CommanderArgumentError(`"0.0" must be a positive amount of tokens.`));
  });

  it.each(["-1", "1e3", "abc", "0.0000000000000000001", ""])("refuses %j, naming it and what is expected", (bad) => {
    const expected = new CommanderArgumentError(`"${bad}" is not an amount of tokens (a decimal >= 0 with at most 18 decimals, e.g. 0.001).`);
    expect(() => tokenAmount(bad)).toThrow(expected);
    expect(() => positiveTokenAmount(bad)).toThrow(expected);
  });
});

describe("the client's deployment file (one reader for discovery and the wallet)", () => {
  const scratch = scratchDir();
  afterAll(() => scratch.cleanup());
  const addr = (n: number): string => "0x" + n.toString(16).padStart(40, "0");
  const contracts = { token: addr(1), staking: addr(2), trust: addr(3), commitments: addr(4), channels: addr(5), registry: addr(6) };
  const file = (name: string, body: unknown): string => {
    const path = join(scratch.dir, name);
    writeFileSync(path, typeof body === "string" ? body : JSON.stringify(body));
    return path;
  };

  it("reads the addresses a client uses, checking the chain when told it", () => {
    const path = file("ok.json", { chainId: "31337", contracts });
    const expected = { chainId: 31337n, token: addr(1), staking: addr(2), trust: addr(3), commitments: addr(4), channels: addr(5) };
    expect(readClientDeployment(path)).toEqual(expected);
    expect(readClientDeployment(path, 31337n)).toEqual(expected);
    expect(() => readClientDeployment(path, 1n)).toThrow(new InvalidArgumentError(`${path} is for chain 31337, the RPC endpoint is chain 1`));
  });

  it("names a missing file, bad JSON, a bad chain id and a missing or bad address", () => {
    const missing = join(scratch.dir, "none.json");
    expect(() => readClientDeployment(missing)).toThrow(`no deployment file ${missing}: run npm run deploy, or pass --deployment FILE`);
    const notJson = file("bad.json", "{");
    expect(() => readClientDeployment(notJson)).toThrow(`${notJson} is not JSON`);
    const noChain = file("nochain.json", { contracts });
    expect(() => readClientDeployment(noChain)).toThrow(`${noChain}: chainId must be a chain id, got undefined`);
    const badChain = file("badchain.json", { chainId: "main", contracts });
    expect(() => readClientDeployment(badChain)).toThrow(`${badChain}: chainId must be a chain id, got main`);
    const noChannels = file("nochannels.json", { chainId: 31337, contracts: { ...contracts, channels: undefined } });
    expect(() => readClientDeployment(noChannels)).toThrow(`${noChannels}: contracts.channels must be an address, got undefined`);
    const badTrust = file("badtrust.json", { chainId: 31337, contracts: { ...contracts, trust: "0x12" } });
    expect(() => readClientDeployment(badTrust)).toThrow(`${badTrust}: contracts.trust must be an address, got 0x12`);
  });
});
