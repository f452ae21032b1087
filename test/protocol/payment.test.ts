import { TypedDataEncoder, Wallet, ZeroHash, hexlify, randomBytes } from "ethers";
import { describe, expect, it } from "vitest";
import { VOUCHER_TYPES, voucherDomain } from "../../protocol/eip712.js";
import { voucherDigest } from "../../protocol/voucher.js";
import { recoverBindingSigner, signBinding, stepCost } from "../../protocol/payment.js";
import { ErrorCode, MessageType, WireError, decodeMessage, encodeMessage, type Message } from "../../protocol/wire.js";

const id = (): string => hexlify(randomBytes(32));
const sig = (): string => hexlify(randomBytes(65));

describe("payment messages", () => {
  it.each<Message>([
    { type: MessageType.BindChannel, requestId: 3, sessionId: id(), channelId: id(), signature: sig() },
    { type: MessageType.ChannelBound, requestId: 3, sessionId: id(), channelId: id(), deposit: 10n ** 20n, owed: 7n, covered: 5n },
    { type: MessageType.Pay, requestId: 4, channelId: id(), cumulativeAmount: (1n << 256n) - 1n, signature: sig() },
    { type: MessageType.Pay, requestId: 4, channelId: id(), cumulativeAmount: 3n, signature: sig(), sessionId: id() },
    { type: MessageType.Paid, requestId: 4, channelId: id(), owed: 9n, covered: 9n },
    { type: MessageType.Error, requestId: 5, code: ErrorCode.PaymentRequired, hop: 1, message: "pay", payment: { channelId: id(), owed: 3n, covered: 1n } },
    { type: MessageType.Error, requestId: 5, code: ErrorCode.Busy, hop: 0, message: "busy" },
  ])("round-trips type $type", (m) => {
    expect(decodeMessage(encodeMessage(m))).toEqual(m);
  });

  it("refuses a truncated voucher and a bad payment flag, naming the field", () => {
    const pay = encodeMessage({ type: MessageType.Pay, requestId: 1, channelId: id(), cumulativeAmount: 5n, signature: sig() });
    expect(() => decodeMessage(pay.subarray(0, pay.length - 1))).toThrow(/frame ends inside voucher signature/);
    expect(() => decodeMessage(new Uint8Array([...pay, 1, 2]))).toThrow(/frame ends inside paid session id/);
    const err = encodeMessage({ type: MessageType.Error, requestId: 1, code: ErrorCode.PaymentRequired, hop: 0, message: "x" });
    const bad = new Uint8Array([...err, 2]);
    expect(() => decodeMessage(bad)).toThrow(new WireError(ErrorCode.BadFrame, "payment flag 2 after an error message must be 1 (channel, owed, covered follow)"));
  });

  it("binds a session to a channel for one server, connection, chain and contract", () => {
    const key = Wallet.createRandom();
    const domain = voucherDomain(31337n, "0x" + "11".repeat(20));
    const b = { channelId: id(), sessionId: id(), server: Wallet.createRandom().address, challenge: id() };
    const s = signBinding(key.signingKey, domain, b);
    expect(recoverBindingSigner(domain, b, s)).toBe(key.address);
    expect(recoverBindingSigner(domain, { ...b, challenge: id() }, s)).not.toBe(key.address);
    expect(recoverBindingSigner(voucherDomain(1n, "0x" + "11".repeat(20)), b, s)).not.toBe(key.address);
  });

  it("costs exactly price × tokens", () => {
    expect(stepCost(10n ** 15n, 7)).toBe(7n * 10n ** 15n);
  });
});

describe("voucherDigest", () => {
  it("hashes as ethers' generic EIP-712 encoder does, at the extremes of the amount and under two domains", () => {
    const ids = [ZeroHash, "0x" + "ff".repeat(32), "0x" + "0123456789abcdef".repeat(4)];
    for (const domain of [voucherDomain(31337n, "0x00000000000000000000000000000000000000C0"), voucherDomain(1n, "0x00000000000000000000000000000000000000C1")]) {
      for (const channelId of ids) {
        for (const cumulativeAmount of [1n, 10n ** 18n, (1n << 256n) - 1n]) {
          expect(voucherDigest(domain, { channelId, cumulativeAmount })).toBe(TypedDataEncoder.hash(domain, VOUCHER_TYPES, { channelId, cumulativeAmount }));
        }
      }
    }
  });

  it("refuses a channel id that is not 32 bytes of hex and an amount out of range, naming them", () => {
    const domain = voucherDomain(31337n, "0x00000000000000000000000000000000000000C0");
    expect(() => voucherDigest(domain, { channelId: "0x12", cumulativeAmount: 1n })).toThrow("voucher.channelId must be 32 bytes of hex, got 0x12");
    expect(() => voucherDigest(domain, { channelId: ZeroHash, cumulativeAmount: 0n })).toThrow("voucher.cumulativeAmount 0 must be in (0, 2^256)");
  });
});
