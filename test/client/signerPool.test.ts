import { Wallet, keccak256, toUtf8Bytes } from "ethers";
import { describe, expect, it } from "vitest";
import { SignerPool } from "../../client/signerPool.js";

describe("SignerPool (signature recovery on a worker thread)", () => {
  it("recovers each signer of many concurrent requests, in any order of arrival, on the worker", async () => {
    const pool = new SignerPool();
    expect(await pool.start()).toBe(true); // what follows runs on the worker
    const wallets = Array.from({ length: 6 }, () => Wallet.createRandom());
    const digests = wallets.map((_, i) => keccak256(toUtf8Bytes(`receipt ${i}`)));
    const signers = await Promise.all(wallets.map((w, i) => pool.recover(digests[i]!, w.signingKey.sign(digests[i]!).serialized)));
    expect(signers).toEqual(wallets.map((w) => w.address));
    // a signature over another digest recovers someone else, not the signer
    const other = await pool.recover(digests[1]!, wallets[0]!.signingKey.sign(digests[0]!).serialized);
    expect(other).not.toBe(wallets[0]!.address);
  });

  it("rejects a malformed signature with the reason, on the worker and before it has loaded", async () => {
    const early = new SignerPool();
    await expect(early.recover(keccak256("0x01"), "0x1234")).rejects.toThrow("invalid raw signature length");
    const pool = new SignerPool();
    expect(await pool.start()).toBe(true);
    await expect(pool.recover(keccak256("0x01"), "0x1234")).rejects.toThrow("invalid raw signature length");
  });

  it("answers requests made before the worker has loaded", async () => {
    const pool = new SignerPool();
    const wallet = Wallet.createRandom();
    const digest = keccak256(toUtf8Bytes("early"));
    // asked in the same turn as the worker starts: answered without it
    expect(await pool.recover(digest, wallet.signingKey.sign(digest).serialized)).toBe(wallet.address);
  });
});
