import { join } from "node:path";
import { Wallet, ZeroAddress, ZeroHash, hexlify, randomBytes } from "ethers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { voucherDomain } from "../../../protocol/eip712.js";
import { signBinding } from "../../../protocol/payment.js";
import { signVoucherSync } from "../../../protocol/voucher.js";
import { ErrorCode, MessageType, WireError, type Pay } from "../../../protocol/wire.js";
import { PaymentGate, type ChainChannel } from "../../../node/server/paymentGate.js";
import { VoucherStore } from "../../../node/store/voucherStore.js";
import { scratchDir } from "../../engine/helpers.js";

const PRICE = 1_000n;
const CONTRACT = "0x" + "cc".repeat(20);
const domain = voucherDomain(31337n, "0x" + "cc".repeat(20));
const client = Wallet.createRandom();
const server = Wallet.createRandom().address;
const challenge = hexlify(randomBytes(32));
const channelId = hexlify(randomBytes(32));

let scratch: { dir: string; cleanup: () => void };
let store: VoucherStore;
let chain: Map<string, ChainChannel>;
let gate: PaymentGate;

const newGate = (creditSteps = 1): PaymentGate =>
  new PaymentGate({ pricePerToken: PRICE, creditSteps, server, voucherDomain: domain, store, readChannel: async (id) => chain.get(id) });

beforeEach(() => {
  scratch = scratchDir();
  store = VoucherStore.open(join(scratch.dir, "v.sqlite"));
  chain = new Map([[channelId, { client: client.address, server, deposit: 10_000n, paid: 0n, closeReadyAt: 0n, closed: false }]]);
  gate = newGate();
});
afterEach(() => {
  store.close();
  scratch.cleanup();
});

async function bind(sessionId: string, id = channelId, key: { signingKey: Wallet["signingKey"] } = client): Promise<void> {
  const signature = signBinding(key.signingKey, domain, { channelId: id, sessionId, server, challenge });
  await gate.bind({ type: MessageType.BindChannel, requestId: 1, sessionId, channelId: id, signature }, challenge);
}

/** A voucher on channel `id` (default the test's), signed for `signedFor` (default the same channel), paying a step of `session` when given. */
function voucher(
  cumulativeAmount: bigint,
  o: { id?: string; key?: { signingKey: Wallet["signingKey"] }; d?: typeof domain; signedFor?: string; session?: string } = {},
): Pay {
  const id = o.id ?? channelId;
  const signature = signVoucherSync((o.key ?? client).signingKey, o.d ?? domain, { channelId: o.signedFor ?? id, cumulativeAmount });
  return { type: MessageType.Pay, requestId: 2, channelId: id, cumulativeAmount, signature, ...(o.session === undefined ? {} : { sessionId: o.session }) };
}

/** The WireError `f` throws (or rejects with). */
async function refusal(f: () => unknown): Promise<WireError> {
  try {
    await f();
  } catch (err) {
    expect(err).toBeInstanceOf(WireError);
    return err as WireError;
  }
  throw new Error("expected a refusal");
}

describe("PaymentGate", () => {
  it("refuses a step of an unbound session, naming the price", async () => {
    const err = await refusal(() => gate.charge("0x" + "01".repeat(32), 0n, 3));
    expect(err.wireCode).toBe(ErrorCode.PaymentRequired);
    expect(err.payment).toEqual({ channelId: ZeroHash, owed: 3_000n, covered: 0n });
    expect(err.message).toContain("has no payment channel: bind one (BindChannel) first; this server charges 1000 per token");
  });

  it("charges price × tokens per step, gives one step of credit, and admits the next once a voucher covers the first", async () => {
    const s = hexlify(randomBytes(32));
    await bind(s);
    gate.charge(s, 0n, 3); // prefill: 3 tokens on credit
    const err = await refusal(() => gate.charge(s, 1n, 1));
    expect(err.wireCode).toBe(ErrorCode.PaymentRequired);
    expect(err.payment).toEqual({ channelId, owed: 3_000n, covered: 0n });
    expect(err.message).toContain(`step 1 of session ${s} needs payment first: channel ${channelId} owes 3000, its vouchers cover 0 (credit: 1 unpaid step per session)`);
    const paid = await gate.pay(voucher(3_000n), 1);
    expect([paid.owed, paid.covered]).toEqual([3_000n, 3_000n]);
    gate.charge(s, 1n, 1);
    expect(store.get(channelId)).toMatchObject({ owed: 4_000n, covered: 3_000n, client: client.address, deposit: 10_000n });
  });

  it("lets `creditSteps` steps run unpaid", async () => {
    gate = newGate(2);
    const s = hexlify(randomBytes(32));
    await bind(s);
    gate.charge(s, 0n, 1);
    gate.charge(s, 1n, 1);
    expect((await refusal(() => gate.charge(s, 2n, 1))).payment).toEqual({ channelId, owed: 2_000n, covered: 0n });
  });

  it("refunds a step that did not run", async () => {
    const s = hexlify(randomBytes(32));
    await bind(s);
    const refund = gate.charge(s, 0n, 2);
    refund();
    expect(store.get(channelId)!.owed).toBe(0n);
    gate.charge(s, 0n, 2); // the retry is admitted: nothing is unpaid
    expect(store.get(channelId)!.owed).toBe(2_000n);
  });

  it("keeps a voucher for less than owed, and says what is owed", async () => {
    const s = hexlify(randomBytes(32));
    await bind(s);
    gate.charge(s, 0n, 3);
    const err = await refusal(() => gate.pay(voucher(2_000n), 1));
    expect(err.wireCode).toBe(ErrorCode.PaymentRequired);
    expect(err.message).toContain(`voucher for 2000 on channel ${channelId} is kept but covers less than the 3000 owed in whole steps (the open sessions' unpaid steps come to 3000)`);
    expect(err.payment).toEqual({ channelId, owed: 3_000n, covered: 2_000n });
    expect(store.vouchers(channelId).map((v) => v.cumulative)).toEqual([2_000n]);
  });

  it("refuses a replayed or stale voucher and keeps the best one", async () => {
    const s = hexlify(randomBytes(32));
    await bind(s);
    gate.charge(s, 0n, 3);
    const v = voucher(3_000n);
    await gate.pay(v, 1);
    const err = await refusal(() => gate.pay(v, 2));
    expect(err.message).toContain(`voucher for 3000 on channel ${channelId} does not exceed the 3000 already accepted: replayed or stale`);
    expect(err.payment).toEqual({ channelId, owed: 3_000n, covered: 3_000n });
    await refusal(() => gate.pay(voucher(1_000n), 3));
    expect(store.get(channelId)).toMatchObject({ covered: 3_000n, signature: v.signature });
  });

  it.each([
    ["another chain", { d: voucherDomain(1n, CONTRACT) }],
    ["another contract", { d: voucherDomain(31337n, ZeroAddress.replace(/0$/, "1")) }],
    ["another key", { key: Wallet.createRandom() }],
    ["another channel", { signedFor: hexlify(randomBytes(32)) }],
  ])("refuses a voucher signed for %s, naming the signer and the channel's client", async (_what, o) => {
    const s = hexlify(randomBytes(32));
    await bind(s);
    const err = await refusal(() => gate.pay(voucher(1_000n, o), 1));
    expect(err.wireCode).toBe(ErrorCode.Forbidden);
    expect(err.message).toMatch(new RegExp(`voucher for 1000 on channel ${channelId} recovers to 0x[0-9a-fA-F]{40}, not the channel's client ${client.address}`));
    expect(store.get(channelId)!.covered).toBe(0n);
  });

  it("refuses a voucher for a channel no session is bound to, and one over the deposit", async () => {
    const other = hexlify(randomBytes(32));
    const err = await refusal(() => gate.pay(voucher(1_000n, { id: other }), 1));
    expect(err.message).toContain(`channel ${other} is bound to no session on this server: send BindChannel first`);
    await bind(hexlify(randomBytes(32)));
    const over = await refusal(() => gate.pay(voucher(10_001n), 1));
    expect(over.message).toContain(`voucher for 10001 exceeds channel ${channelId}'s deposit 10000`);
  });

  it("refuses a binding signed by someone else, to a channel of another server, closing or unknown", async () => {
    const s = hexlify(randomBytes(32));
    const stranger = Wallet.createRandom();
    const err = await refusal(() => bind(s, channelId, stranger));
    expect(err.wireCode).toBe(ErrorCode.Forbidden);
    expect(err.message).toContain(`is signed by ${stranger.address}, the channel's client is ${client.address}`);
    const unknown = hexlify(randomBytes(32));
    expect((await refusal(() => bind(s, unknown))).message).toContain(`channel ${unknown} does not exist on chain`);
    chain.set(channelId, { ...chain.get(channelId)!, server: ZeroAddress });
    expect((await refusal(() => bind(s))).message).toContain(`channel ${channelId} pays ${ZeroAddress}, not this server ${server}`);
    chain.set(channelId, { ...chain.get(channelId)!, server, closeReadyAt: 99n });
    expect((await refusal(() => bind(s))).message).toContain(`channel ${channelId} is closing (ready at 99)`);
  });

  it("refuses a step the deposit cannot cover", async () => {
    const s = hexlify(randomBytes(32));
    await bind(s);
    const err = await refusal(() => gate.charge(s, 0n, 11));
    expect(err.message).toContain(`step 0 costs 11000: channel ${channelId}'s deposit 10000 cannot cover 11000 owed; top it up`);
    expect(store.get(channelId)!.owed).toBe(0n);
  });

  it("remembers what is owed and covered across a restart", async () => {
    const s = hexlify(randomBytes(32));
    await bind(s);
    gate.charge(s, 0n, 3);
    await gate.pay(voucher(3_000n), 1);
    gate.charge(s, 1n, 1);
    store.close();
    store = VoucherStore.open(join(scratch.dir, "v.sqlite"));
    gate = newGate();
    await bind(hexlify(randomBytes(32)));
    expect(store.get(channelId)).toMatchObject({ owed: 4_000n, covered: 3_000n });
    // the step owed from before the restart is answered by no session: the next step waits for its voucher
    const s2 = hexlify(randomBytes(32));
    await bind(s2);
    const err = await refusal(() => gate.charge(s2, 0n, 1));
    expect(err.payment).toEqual({ channelId, owed: 4_000n, covered: 3_000n });
    expect(err.message).toContain(`step 0 of session ${s2} needs payment first: channel ${channelId} owes 1000 for work of no open session (owed 4000, its vouchers cover 3000)`);
    await gate.pay(voucher(4_000n), 2);
    gate.charge(s2, 0n, 1);
  });

  describe("sessions sharing a channel", () => {
    const sessions = (): [string, string] => [hexlify(randomBytes(32)), hexlify(randomBytes(32))];

    it("gives each session its own credit: a voucher naming the later session's step covers it, the earlier still waits", async () => {
      const [s1, s2] = sessions();
      await bind(s1);
      await bind(s2);
      gate.charge(s1, 0n, 3); // charged first
      gate.charge(s2, 0n, 1); // the other session is not held up by s1's unpaid step
      // s2's answer came back first: its voucher (1000) is signed before s1's
      expect(await gate.pay(voucher(1_000n, { session: s2 }), 1)).toMatchObject({ owed: 4_000n, covered: 1_000n });
      gate.charge(s2, 1n, 1); // s2's step is paid: its next runs
      const err = await refusal(() => gate.charge(s1, 1n, 1));
      expect(err.message).toContain(`step 1 of session ${s1} needs payment first: channel ${channelId} owes 5000, its vouchers cover 1000 (credit: 1 unpaid step per session)`);
      expect(await gate.pay(voucher(4_000n, { session: s1 }), 2)).toMatchObject({ owed: 5_000n, covered: 4_000n }); // s2's second step is running
      gate.charge(s1, 1n, 1);
      expect(store.get(channelId)).toMatchObject({ owed: 6_000n, covered: 4_000n });
    });

    it("covers the oldest steps with a voucher that names no session", async () => {
      const [s1, s2] = sessions();
      await bind(s1);
      await bind(s2);
      gate.charge(s1, 0n, 2);
      gate.charge(s2, 0n, 2);
      await gate.pay(voucher(2_000n), 1);
      gate.charge(s1, 1n, 1);
      expect((await refusal(() => gate.charge(s2, 1n, 1))).payment).toEqual({ channelId, owed: 5_000n, covered: 2_000n });
    });

    it("keeps a voucher that pays part of a session's step, and says so though another session's step is running", async () => {
      const [s1, s2] = sessions();
      await bind(s1);
      await bind(s2);
      gate.charge(s1, 0n, 3);
      gate.charge(s2, 0n, 2);
      const err = await refusal(() => gate.pay(voucher(1_000n, { session: s1 }), 1));
      expect(err.message).toContain(`voucher for 1000 on channel ${channelId} is kept but covers less than the 5000 owed in whole steps (the open sessions' unpaid steps come to 5000)`);
      expect(err.payment).toEqual({ channelId, owed: 5_000n, covered: 1_000n });
      expect((await refusal(() => gate.charge(s1, 1n, 1))).wireCode).toBe(ErrorCode.PaymentRequired);
    });

    it("bounds the whole channel by its deposit", async () => {
      const [s1, s2] = sessions();
      await bind(s1);
      await bind(s2);
      gate.charge(s1, 0n, 6);
      const err = await refusal(() => gate.charge(s2, 0n, 5));
      expect(err.message).toContain(`step 0 costs 5000: channel ${channelId}'s deposit 10000 cannot cover 11000 owed; top it up`);
    });

    it("forgets a session that ends; what it left unpaid holds the channel's other sessions until a voucher covers it", async () => {
      const [s1, s2] = sessions();
      await bind(s1);
      await bind(s2);
      gate.charge(s1, 0n, 2);
      gate.unbind(s1);
      expect(gate.boundSessions).toBe(1);
      const err = await refusal(() => gate.charge(s2, 0n, 1));
      expect(err.message).toContain(`channel ${channelId} owes 2000 for work of no open session (owed 2000, its vouchers cover 0)`);
      await gate.pay(voucher(2_000n), 1);
      gate.charge(s2, 0n, 1);
      gate.unbind(s2);
      expect(gate.boundSessions).toBe(0);
      const late = await refusal(() => gate.pay(voucher(3_000n), 2));
      expect(late.message).toContain(`channel ${channelId} is bound to no session on this server: send BindChannel first`);
    });
  });

  it("binds at most maxBoundSessions sessions: past it Busy, and room again once one ends", async () => {
    gate = new PaymentGate({ pricePerToken: PRICE, maxBoundSessions: 2, server, voucherDomain: domain, store, readChannel: async (id) => chain.get(id) });
    const [s1, s2, s3] = [0, 1, 2].map(() => hexlify(randomBytes(32))) as [string, string, string];
    await bind(s1);
    await bind(s2);
    await bind(s2); // binding a bound session again takes no more room
    const err = await refusal(() => bind(s3));
    expect(err.wireCode).toBe(ErrorCode.Busy);
    expect(err.message).toBe("2 sessions are bound to payment channels on this server, its limit (maxBoundSessions): try again later");
    gate.unbind(s1);
    await bind(s3);
    expect(gate.boundSessions).toBe(2);
    expect(() => new PaymentGate({ pricePerToken: PRICE, maxBoundSessions: 0, server, voucherDomain: domain, store, readChannel: async () => undefined })).toThrow(
      "payment gate maxBoundSessions must be a positive integer, got 0",
    );
  });
});
