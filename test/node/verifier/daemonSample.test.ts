import { keccak256, toBeHex } from "ethers";
import { describe, expect, it } from "vitest";
import { isSampled } from "../../../node/verifier/sample.js";

const leaves = Array.from({ length: 4000 }, (_, i) => keccak256(toBeHex(i, 32)));
const blockA = keccak256(toBeHex(1001, 32));
const blockB = keccak256(toBeHex(1002, 32));
const sampledAt = (block: string, rate: number): Set<string> => new Set(leaves.filter((leaf) => isSampled(block, leaf, rate)));

describe("the audit sample of a batch", () => {
  it("audits nothing at rate 0 and everything at rate 1", () => {
    expect(sampledAt(blockA, 0).size).toBe(0);
    expect(sampledAt(blockA, 1).size).toBe(leaves.length);
  });

  it("samples about rate × receipts, a superset at a higher rate, another subset under another block hash", () => {
    const quarter = sampledAt(blockA, 0.25);
    // binomial(4000, 0.25): mean 1000, standard deviation 27
    expect(quarter.size).toBeGreaterThan(900);
    expect(quarter.size).toBeLessThan(1100);
    const half = sampledAt(blockA, 0.5);
    expect([...quarter].every((leaf) => half.has(leaf))).toBe(true);
    expect(half.size).toBeGreaterThan(quarter.size);
    const other = sampledAt(blockB, 0.25);
    const shared = [...other].filter((leaf) => quarter.has(leaf)).length;
    // independent draws share about 0.25 × 0.25 × 4000 = 250
    expect(shared).toBeGreaterThan(180);
    expect(shared).toBeLessThan(320);
    expect(sampledAt(blockB, 0.25)).toEqual(other); // deterministic: any verifier can check the sample
  });

  it("refuses a rate outside [0, 1]", () => {
    for (const rate of [-0.1, 1.5, Number.NaN]) {
      expect(() => isSampled(blockA, leaves[0]!, rate)).toThrow(`sample rate must be a number in [0, 1], got ${rate}`);
    }
  });
});
