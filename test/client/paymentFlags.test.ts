import { describe, expect, it } from "vitest";
import { paymentFor } from "../../client/payment/generatePayment.js";
import { InvalidArgumentError } from "../../protocol/errors.js";

describe("the payment flags", () => {
  it("refuse ticket flags without a wallet, a face value without --pay tickets, and a daily limit with tickets, before anything opens", async () => {
    await expect(paymentFor({ channelTokens: 1, pay: "tickets" })).rejects.toThrow(
      new InvalidArgumentError("--pay tickets and --ticket-face-value pay from a wallet's ticket deposit: give --wallet too"),
    );
    await expect(paymentFor({ channelTokens: 1, pay: "channels", ticketFaceValue: 1n })).rejects.toThrow(
      new InvalidArgumentError("--pay tickets and --ticket-face-value pay from a wallet's ticket deposit: give --wallet too"),
    );
    const wallet = { wallet: "/nonexistent/wallet.json", rpc: "http://127.0.0.1:1", deployment: "/nonexistent/31337.json", channelTokens: 1 };
    await expect(paymentFor({ ...wallet, pay: "channels", ticketFaceValue: 1n })).rejects.toThrow(
      new InvalidArgumentError("--ticket-face-value sets the tickets' face value: give --pay tickets too"),
    );
    await expect(paymentFor({ ...wallet, pay: "tickets", maxCostPerDay: 1n })).rejects.toThrow(
      new InvalidArgumentError("--max-cost-per-day counts channel vouchers: with --pay tickets use --max-cost-per-query"),
    );
  });
});
