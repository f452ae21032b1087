import { join } from "node:path";
import { hexlify, randomBytes } from "ethers";
import { pino, type Logger } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Redeemer } from "../../../node/chain/redeemer.js";
import { VoucherStore } from "../../../node/store/voucherStore.js";
import type { PaymentChannels } from "../../../types/ethers-contracts/index.js";
import { scratchDir } from "../../engine/helpers.js";

const channelId = hexlify(randomBytes(32));
let scratch: { dir: string; cleanup: () => void };
let store: VoucherStore;

beforeEach(() => {
  scratch = scratchDir();
  store = VoucherStore.open(join(scratch.dir, "v.sqlite"));
  store.track(channelId, "0x" + "11".repeat(20), 1_000n, 0n, 0);
});
afterEach(() => {
  store.close();
  scratch.cleanup();
});

/** A PaymentChannels stand-in (no chain: closes are not watched) whose first `failures` redemptions revert. */
function fakeChannels(failures: number): { channels: PaymentChannels; sent: bigint[] } {
  const sent: bigint[] = [];
  let paid = 0n;
  const channels = {
    runner: null,
    channel: async () => ({ closed: false, paid }),
    redeem: async (_id: string, amount: bigint) => {
      if (failures-- > 0) throw new Error("execution reverted: out of gas");
      sent.push(amount);
      paid = amount;
      return { wait: async () => ({ hash: "0x01" }) };
    },
  };
  return { channels: channels as unknown as PaymentChannels, sent };
}

function logged(): { logger: Logger; lines: { msg: string; err?: string }[] } {
  const lines: { msg: string; err?: string }[] = [];
  const logger: Logger = pino({ level: "info" }, { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string; err?: string }) }) as unknown as Logger;
  return { logger, lines };
}

describe("Redeemer", () => {
  it("redeems once what is held reaches the threshold, and not before", async () => {
    const { channels, sent } = fakeChannels(0);
    const r = new Redeemer({ channels, store, thresholdWei: 300n, logger: pino({ level: "silent" }) });
    store.accept(channelId, 200n, "0xsig", 1);
    expect(await r.pass(false)).toBe(0);
    store.accept(channelId, 300n, "0xsig2", 2);
    expect(await r.pass(false)).toBe(1);
    expect(sent).toEqual([300n]);
    expect(store.get(channelId)!.redeemed).toBe(300n);
    expect(await r.pass(true)).toBe(0); // nothing new: no second transaction
  });

  it("logs a failed redemption and retries it at the next pass", async () => {
    const { channels, sent } = fakeChannels(1);
    const { logger, lines } = logged();
    const r = new Redeemer({ channels, store, logger });
    store.accept(channelId, 500n, "0xsig", 1);
    expect(await r.pass(false)).toBe(0);
    expect(lines.find((l) => l.msg === "redemption failed; retrying at the next poll")?.err).toBe("execution reverted: out of gas");
    expect(store.unredeemed().map((c) => c.covered)).toEqual([500n]);
    expect(await r.stop()).toBe(1);
    expect(sent).toEqual([500n]);
    expect(store.unredeemed()).toEqual([]);
  });

  it("redeems a closing channel whatever the threshold", async () => {
    const { channels, sent } = fakeChannels(0);
    const r = new Redeemer({ channels, store, thresholdWei: 10n ** 30n, logger: pino({ level: "silent" }) });
    store.accept(channelId, 5n, "0xsig", 1);
    expect(await r.pass(false)).toBe(0);
    store.markClosing(channelId, 12345);
    expect(await r.pass(false)).toBe(1);
    expect(sent).toEqual([5n]);
  });
});
