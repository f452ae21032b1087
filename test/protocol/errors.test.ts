import { describe, expect, it } from "vitest";
import { EFedError, InvalidArgumentError } from "../../protocol/errors.js";

describe("EFedError", () => {
  it("carries a stable code, details and the cause", () => {
    const cause = new Error("disk full");
    const err = new EFedError("STORE_WRITE", "cannot write receipt 7", { details: { receipt: 7 }, cause });
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe("EFedError");
    expect(err.code).toBe("STORE_WRITE");
    expect(err.message).toBe("cannot write receipt 7");
    expect(err.details).toEqual({ receipt: 7 });
    expect(err.cause).toBe(cause);
  });

  it("names subclasses after themselves", () => {
    const err = new InvalidArgumentError("bad --port 70000: expected 1..65535", { port: 70000 });
    expect(err).toBeInstanceOf(EFedError);
    expect(err.name).toBe("InvalidArgumentError");
    expect(err.code).toBe("INVALID_ARGUMENT");
    expect(err.details).toEqual({ port: 70000 });
  });
});
