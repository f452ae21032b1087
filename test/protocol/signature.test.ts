import { Wallet, ZeroAddress, concat, keccak256, toBeHex, toUtf8Bytes } from "ethers";
import { describe, expect, it } from "vitest";
import { canonicalSignature, receiptDomain, voucherDomain } from "../../protocol/eip712.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { recoverReceiptSigner, signReceiptWithKey, type Receipt } from "../../protocol/receipt.js";
import { recoverVoucherSigner, signVoucher } from "../../protocol/voucher.js";

const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
// A fixed key so failures reproduce (a public test key, never funded).
const wallet = new Wallet("0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba");
const receipt: Receipt = {
  sessionId: keccak256(toUtf8Bytes("session")),
  step: 3n,
  firstLayer: 0,
  lastLayer: 4,
  variantId: keccak256(toUtf8Bytes("variant")),
  inputHash: keccak256(toUtf8Bytes("in")),
  outputHash: keccak256(toUtf8Bytes("out")),
  tokens: 1,
  server: wallet.address,
};
const rDomain = receiptDomain(31337n, ZeroAddress);
const good = signReceiptWithKey(wallet.signingKey, rDomain, receipt);
const r = good.slice(0, 66);
const s = "0x" + good.slice(66, 130);
const v = Number.parseInt(good.slice(130), 16);

/** The other encodings ethers would accept for the same signature, which OpenZeppelin rejects. */
const variants = {
  compact64: concat([r, toBeHex((BigInt(v - 27) << 255n) | BigInt(s), 32)]),
  vZeroOne: concat([r, s, toBeHex(v - 27, 1)]),
  highS: concat([r, toBeHex(N - BigInt(s), 32), toBeHex(v === 27 ? 28 : 27, 1)]),
};

describe("canonical signatures (what OpenZeppelin ECDSA.recover accepts)", () => {
  it("accepts a 65-byte low-s signature with v 27 or 28, unchanged but lower-cased", () => {
    expect([27, 28]).toContain(v);
    expect(canonicalSignature(good.toUpperCase().replace("0X", "0x"))).toBe(good.toLowerCase());
    expect(recoverReceiptSigner(rDomain, receipt, good)).toBe(wallet.address);
  });

  it("rejects the 64-byte (EIP-2098) form, v in {0, 1}, a high s, and other v values, naming the fault", () => {
    expect(() => canonicalSignature(variants.compact64)).toThrow(new InvalidArgumentError(`signature must be 65 bytes r‖s‖v, got 64 bytes: ${variants.compact64}`));
    expect(() => canonicalSignature(variants.vZeroOne)).toThrow(`signature v must be 27 or 28, got ${v - 27}`);
    expect(() => canonicalSignature(concat([r, s, toBeHex(29, 1)]))).toThrow("signature v must be 27 or 28, got 29");
    expect(() => canonicalSignature(variants.highS)).toThrow(`signature s 0x${(N - BigInt(s)).toString(16)} is outside (0, n/2]: malleable or invalid`);
    expect(() => canonicalSignature(concat([toBeHex(0, 32), s, toBeHex(v, 1)]))).toThrow("signature r 0x0 is outside (0, n)");
    expect(() => canonicalSignature(concat([toBeHex(N, 32), s, toBeHex(v, 1)]))).toThrow(`signature r 0x${N.toString(16)} is outside (0, n)`);
    expect(() => canonicalSignature(concat([r, toBeHex(0, 32), toBeHex(v, 1)]))).toThrow("signature s 0x0 is outside (0, n/2]");
    expect(() => canonicalSignature("0xzz")).toThrow("signature must be 65 bytes r‖s‖v, got not hex: 0xzz");
  });

  it("receipt and voucher recovery refuse every non-canonical encoding of a valid signature", async () => {
    for (const [name, sig] of Object.entries(variants)) {
      expect(() => recoverReceiptSigner(rDomain, receipt, sig), name).toThrow(InvalidArgumentError);
    }
    const vDomain = voucherDomain(31337n, ZeroAddress);
    const voucher = { channelId: keccak256(toUtf8Bytes("channel")), cumulativeAmount: 1234n };
    const vs = await signVoucher(wallet, vDomain, voucher);
    expect(recoverVoucherSigner(vDomain, voucher, vs)).toBe(wallet.address);
    const vr = vs.slice(0, 66);
    const vsS = "0x" + vs.slice(66, 130);
    const vv = Number.parseInt(vs.slice(130), 16);
    for (const sig of [concat([vr, vsS, toBeHex(vv - 27, 1)]), concat([vr, toBeHex(N - BigInt(vsS), 32), toBeHex(vv === 27 ? 28 : 27, 1)])]) {
      expect(() => recoverVoucherSigner(vDomain, voucher, sig)).toThrow(InvalidArgumentError);
    }
  });
});
