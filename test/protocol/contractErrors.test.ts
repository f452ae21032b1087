import { ZeroAddress, type Interface, ZeroHash, getAddress, id, parseEther, type ParamType } from "ethers";
import { describe, expect, it } from "vitest";
import {
  ContractCallError,
  contractCall,
  decodeContractError,
  describeChainError,
  formatTokens,
  hasSentence,
  knownContractErrors,
} from "../../protocol/contractErrors.js";
import {
  AuditLedger__factory,
  Commitments__factory,
  DataRequests__factory,
  Disputes__factory,
  EFedToken__factory,
  ModelRegistry__factory,
  PaymentChannels__factory,
  Staking__factory,
  TrustScores__factory,
  VerifierRewards__factory,
} from "../../types/ethers-contracts/index.js";

const CONTRACTS: readonly [string, Interface][] = [
  ["EFedToken", EFedToken__factory.createInterface()],
  ["ModelRegistry", ModelRegistry__factory.createInterface()],
  ["Staking", Staking__factory.createInterface()],
  ["Commitments", Commitments__factory.createInterface()],
  ["Disputes", Disputes__factory.createInterface()],
  ["DataRequests", DataRequests__factory.createInterface()],
  ["AuditLedger", AuditLedger__factory.createInterface()],
  ["PaymentChannels", PaymentChannels__factory.createInterface()],
  ["TrustScores", TrustScores__factory.createInterface()],
  ["VerifierRewards", VerifierRewards__factory.createInterface()],
];
const OPERATOR = getAddress("0xab5801a7d398351b8be11c439e05c5b3259aec9b");
const staking = Staking__factory.createInterface();
const encode = (iface: Interface, name: string, args: unknown[]): string => iface.encodeErrorResult(name, args);

/** A value of `p`'s type, distinct per position so a sentence that mixes up arguments shows it. */
function sample(p: ParamType, i: number): unknown {
  if (p.baseType === "tuple") return p.components!.map((c, j) => sample(c, j));
  if (p.baseType === "array") return [];
  if (p.type === "address") return getAddress(`0x${(i + 1).toString(16).padStart(40, "0")}`);
  if (p.type === "bool") return true;
  if (p.type === "string") return `s${i}`;
  if (p.type.startsWith("bytes")) return p.type === "bytes" ? "0x01" : `0x${(i + 1).toString(16).padStart(Number(p.type.slice(5)) * 2, "0")}`;
  return BigInt(i + 1);
}

describe("decodeContractError", () => {
  for (const [contract, iface] of CONTRACTS) {
    it(`decodes every custom error of ${contract} to its name, arguments and its own sentence`, () => {
      const names: string[] = [];
      iface.forEachError((fragment) => {
        const args = fragment.inputs.map((p, i) => sample(p, i));
        const decoded = decodeContractError(iface.encodeErrorResult(fragment, args));
        expect(decoded?.name).toBe(fragment.name);
        expect(decoded?.args.length).toBe(args.length);
        expect(hasSentence(fragment.name), `${fragment.name} has no sentence`).toBe(true);
        expect(decoded?.sentence).not.toBe(decoded?.text);
        names.push(fragment.name);
      });
      expect(names.length).toBeGreaterThan(0);
      for (const n of names) expect(knownContractErrors()).toContain(n);
    });
  }

  it("says what a StakingInsufficientStake means in tokens", () => {
    const d = decodeContractError(encode(staking, "StakingInsufficientStake", [OPERATOR, parseEther("1000"), parseEther("2200")]));
    expect(d).toEqual({
      name: "StakingInsufficientStake",
      args: [OPERATOR, parseEther("1000"), parseEther("2200")],
      text: `StakingInsufficientStake(${OPERATOR}, 1000000000000000000000, 2200000000000000000000)`,
      sentence: `${OPERATOR} has 1,000 EFED bonded free of disputes; this needs 2,200 EFED`,
    });
  });

  it("names the role an AccessControl revert is about", () => {
    const registry = ModelRegistry__factory.createInterface();
    expect(decodeContractError(encode(registry, "AccessControlUnauthorizedAccount", [OPERATOR, id("REGISTRAR_ROLE")]))?.sentence).toBe(
      `${OPERATOR} does not hold REGISTRAR_ROLE on this contract`,
    );
    expect(decodeContractError(encode(registry, "AccessControlUnauthorizedAccount", [OPERATOR, ZeroHash]))?.sentence).toBe(
      `${OPERATOR} does not hold DEFAULT_ADMIN_ROLE on this contract`,
    );
  });

  it("gives dates, layer ranges, roles and statuses in words", () => {
    expect(decodeContractError(encode(staking, "StakingUnbondingNotReady", [OPERATOR, 1_800_000_000n, 1_799_996_400n]))?.sentence).toBe(
      `${OPERATOR}'s unbonding stake can be withdrawn from 2027-01-15T08:00:00Z; it is now 2027-01-15T07:00:00Z`,
    );
    expect(decodeContractError(encode(staking, "StakingRoleConflict", [OPERATOR, 2]))?.sentence).toBe(
      `${OPERATOR} is already registered as a verifier; one key holds one role`,
    );
    const commitments = Commitments__factory.createInterface();
    expect(decodeContractError(encode(commitments, "CommitmentsNotRegisteredFor", [OPERATOR, ZeroHash, 0, 4]))?.sentence).toBe(
      `${OPERATOR} is not registered for variant ${ZeroHash} layers 0–3`,
    );
    const disputes = Disputes__factory.createInterface();
    expect(decodeContractError(encode(disputes, "DisputesWrongStatus", [7n, 3, 1]))?.sentence).toBe("dispute 7 is Settled; this needs it Open");
    const token = EFedToken__factory.createInterface();
    expect(decodeContractError(encode(token, "ERC20InsufficientBalance", [OPERATOR, parseEther("12.5"), parseEther("1400")]))?.sentence).toBe(
      `${OPERATOR} holds 12.5 EFED; the transfer needs 1,400 EFED`,
    );
  });

  it("finds revert data nested in an ethers error the way nodes report it", () => {
    const data = encode(staking, "StakingNothingToWithdraw", [OPERATOR]);
    const hardhatShape = { code: "CALL_EXCEPTION", data };
    const wrapped = { code: "UNKNOWN_ERROR", error: { message: "execution reverted", data: { data } } };
    const infoShape = { info: { error: { code: 3, data } } };
    for (const err of [hardhatShape, wrapped, infoShape, { cause: hardhatShape }]) {
      expect(decodeContractError(err)?.sentence).toBe(`${OPERATOR} has nothing unbonding: request unbonding first`);
    }
  });

  it("returns undefined for data of no protocol contract, or none", () => {
    expect(decodeContractError("0xdeadbeef")).toBeUndefined();
    expect(decodeContractError({ message: "timeout" })).toBeUndefined();
    expect(decodeContractError(undefined)).toBeUndefined();
  });
});

describe("describeChainError", () => {
  it("prefixes the error's name to its sentence", () => {
    const registry = ModelRegistry__factory.createInterface();
    expect(describeChainError({ data: encode(registry, "RegistryUnknownVariant", [id("v")]) })).toBe(
      `RegistryUnknownVariant: variant ${id("v")} is not registered: register it first with efed model register`,
    );
  });

  it("explains an empty result as a deployment that does not match the chain", () => {
    const err = { code: "BAD_DATA", value: "0x", shortMessage: "could not decode result data", transaction: { to: OPERATOR } };
    expect(describeChainError(err)).toBe(
      `the contract at ${OPERATOR} returned no data: there is no contract there on this chain (was the chain restarted or redeployed?). ` +
        "Deploy again with npm run deploy, or pass --deployment with the file of this chain's deployment",
    );
  });

  it("names the selector of an unknown revert and falls back to the short message", () => {
    expect(describeChainError({ data: "0xdeadbeef00" })).toBe("the call reverted with an error this version does not know (selector 0xdeadbeef)");
    expect(describeChainError({ shortMessage: "network timeout", message: "long dump" })).toBe("network timeout");
  });
});

describe("contractCall", () => {
  it("wraps a revert in a ContractCallError that names the action, the error and its arguments", async () => {
    const data = encode(staking, "StakingVariantInactive", [ZeroHash]);
    const err = await contractCall("registering", () => Promise.reject(Object.assign(new Error("execution reverted"), { data }))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ContractCallError);
    expect(err).toMatchObject({
      code: "CHAIN_CALL_FAILED",
      errorName: "StakingVariantInactive",
      errorArgs: [ZeroHash],
      message: `registering failed: StakingVariantInactive: variant ${ZeroHash} is not registered or is retired`,
    });
  });

  it("passes a successful result through", async () => {
    expect(await contractCall("reading", () => Promise.resolve(42))).toBe(42);
  });
});

describe("formatTokens", () => {
  it("groups thousands and keeps only the decimals there are", () => {
    expect(formatTokens(0n)).toBe("0 EFED");
    expect(formatTokens(parseEther("1234567.25"))).toBe("1,234,567.25 EFED");
    expect(formatTokens(1n)).toBe("0.000000000000000001 EFED");
    expect(formatTokens(-parseEther("1000"))).toBe("-1,000 EFED");
  });

  it("formats the zero address as an address, not a number", () => {
    const token = EFedToken__factory.createInterface();
    expect(decodeContractError(encode(token, "OwnableInvalidOwner", [ZeroAddress]))?.sentence).toBe(`${ZeroAddress} cannot own the token`);
  });
});
