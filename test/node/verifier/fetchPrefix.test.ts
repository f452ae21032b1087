import { describe, expect, it } from "vitest";
import { encodeActivations } from "../../../protocol/activations.js";
import { EFedError } from "../../../protocol/errors.js";
import type { StepEvidence } from "../../../node/verifier/audit.js";
import { AuditTooLargeError, fetchSessionPrefix, type StepSource } from "../../../node/verifier/fetchPrefix.js";

const SESSION = "0x" + "42".repeat(32);
const evidence = (step: bigint): StepEvidence => ({
  receipt: {
    sessionId: SESSION,
    step,
    firstLayer: 0,
    lastLayer: 1,
    variantId: SESSION,
    inputHash: SESSION,
    outputHash: SESSION,
    tokens: 1,
    server: "0x" + "00".repeat(20),
  },
  input: encodeActivations(new Float32Array(8), 1, 8, "fp32"),
  output: encodeActivations(new Float32Array(8), 1, 8, "fp32"),
});

/** A server that has steps below `has`, then fails with `error`. */
function source(has: bigint, error: Error): StepSource & { asked: bigint[] } {
  const asked: bigint[] = [];
  return {
    asked,
    fetchSessionStep: (sessionId, step) => {
      asked.push(step);
      return step < has ? Promise.resolve(evidence(step)) : Promise.reject(error);
    },
  };
}

describe("fetchSessionPrefix", () => {
  it("fetches steps 0..last in order", async () => {
    const s = source(10n, new Error("unused"));
    const prefix = await fetchSessionPrefix(s, SESSION, 4n);
    expect(prefix.steps.map((x) => x.receipt.step)).toEqual([0n, 1n, 2n, 3n, 4n]);
    expect(prefix.withheld).toBeUndefined();
    expect(s.asked).toEqual([0n, 1n, 2n, 3n, 4n]);
  });

  for (const code of ["SERVER_19", "TIMEOUT", "CLOSED"]) {
    it(`reports ${code} as withholding at that step and stops asking`, async () => {
      const s = source(2n, new EFedError(code, "no answer"));
      const prefix = await fetchSessionPrefix(s, SESSION, 5n);
      expect(prefix.steps.length).toBe(2);
      expect(prefix.withheld).toEqual({ step: 2n, reason: `${code}: no answer` });
      expect(s.asked).toEqual([0n, 1n, 2n]);
    });
  }

  it("throws errors that are the verifier's problem (not authenticated)", async () => {
    await expect(fetchSessionPrefix(source(0n, new EFedError("SERVER_18", "fetching a step needs the owner's proof")), SESSION, 1n)).rejects.toThrow(
      "fetching a step needs the owner's proof",
    );
  });

  it("refuses an audit past its step and byte limits", async () => {
    const tooLong = fetchSessionPrefix(source(10n, new Error("unused")), SESSION, 4n, { maxSteps: 4, maxBytes: 1e9 });
    await expect(tooLong).rejects.toThrow(`auditing step 4 of session ${SESSION} needs 5 steps, over the limit of 4`);
    await expect(tooLong).rejects.toBeInstanceOf(AuditTooLargeError);
    // each step holds 64 activation bytes: the third passes 150
    await expect(fetchSessionPrefix(source(10n, new Error("unused")), SESSION, 4n, { maxSteps: 10, maxBytes: 150 })).rejects.toThrow(
      `session ${SESSION} holds more than 150 activation bytes by step 2`,
    );
    await expect(fetchSessionPrefix(source(10n, new Error("unused")), SESSION, -1n)).rejects.toThrow("last step must be >= 0, got -1");
  });
});
