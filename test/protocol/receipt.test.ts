import { TypedDataEncoder, Wallet, ZeroAddress, hexlify, randomBytes } from "ethers";
import { describe, expect, it } from "vitest";
import { RECEIPT_TYPES, receiptDomain } from "../../protocol/eip712.js";
import { receiptDigest, receiptLeaf, recoverReceiptSigner, signReceipt, signReceiptWithKey, type Receipt } from "../../protocol/receipt.js";
import { SeededRandom } from "../../engine/random.js";

const rng = new SeededRandom(12);
const wallet = Wallet.createRandom();

function randomReceipt(): Receipt {
  const first = Math.floor(rng.uniform() * 60000);
  return {
    sessionId: hexlify(randomBytes(32)),
    step: BigInt(Math.floor(rng.uniform() * 2 ** 53)) * 1021n,
    firstLayer: first,
    lastLayer: first + 1 + Math.floor(rng.uniform() * 5000),
    variantId: hexlify(randomBytes(32)),
    inputHash: hexlify(randomBytes(32)),
    outputHash: hexlify(randomBytes(32)),
    tokens: 1 + Math.floor(rng.uniform() * 2 ** 31),
    server: Wallet.createRandom().address,
  };
}

describe("receipt hashing fast path", () => {
  it("equals ethers' generic EIP-712 encoder on random receipts (leaf and digest)", () => {
    for (const chainId of [1n, 31337n]) {
      const domain = receiptDomain(chainId, Wallet.createRandom().address);
      for (let i = 0; i < 50; i++) {
        const r = randomReceipt();
        expect(receiptLeaf(r)).toBe(TypedDataEncoder.hashStruct("Receipt", RECEIPT_TYPES, r));
        expect(receiptDigest(domain, r)).toBe(TypedDataEncoder.hash(domain, RECEIPT_TYPES, r));
      }
    }
  });

  it("a raw-key signature equals the wallet's typed-data signature and recovers to it", async () => {
    const domain = receiptDomain(5n, ZeroAddress);
    const r = { ...randomReceipt(), server: wallet.address };
    const fast = signReceiptWithKey(wallet.signingKey, domain, r);
    expect(fast).toBe(await signReceipt(wallet, domain, r));
    expect(recoverReceiptSigner(domain, r, fast)).toBe(wallet.address);
    expect(recoverReceiptSigner(receiptDomain(6n, ZeroAddress), r, fast)).not.toBe(wallet.address);
  });
});
