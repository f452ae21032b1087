import { Wallet, keccak256, toUtf8Bytes } from "ethers";
import { describe, expect, it } from "vitest";
import { SignerPool } from "../../client/signerPool.js";

describe("SignerPool (signature recovery on a worker thread)", () => {
  it("recovers each signer of many concurrent requests, in any order of arrival", async () => {
    const pool = new SignerPool();
    const wallets = Array.from({ length: 6 }, () => Wallet.createRandom());
    const digests = wallets.map((_, i) => keccak256(toUtf8Bytes(`receipt ${i}`)));
    const signers = await Promise.all(wallets.map((w, i) => pool.recover(digests[i]!, w.signingKey.sign(digests[i]!).serialized)));
    expect(signers).toEqual(wallets.map((w) => w.address));
    // a signature over another digest recovers someone else, not the signer
    const other = await pool.recover(digests[1]!, wallets[0]!.signingKey.sign(digests[0]!).serialized);
    expect(other).not.toBe(wallets[0]!.address);
  });

  it("rejects a malformed signature with the reason", async () => {
    const pool = new SignerPool();
    await expect(pool.recover(keccak256("0x01"), "0x1234")).rejects.toThrow("invalid raw signature length");
  });
});
