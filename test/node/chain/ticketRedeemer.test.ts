import { ZeroHash, type Interface } from "ethers";
import { pino, type Logger } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { TicketRedeemer } from "../../../node/chain/ticketRedeemer.js";
import { TicketStore, type WinningTicket } from "../../../node/store/ticketStore.js";
import { recipientRandHash } from "../../../protocol/tickets.js";
import { TicketBroker__factory, type TicketBroker } from "../../../types/ethers-contracts/index.js";
import { scratchDir } from "../../engine/helpers.js";

const scratch = scratchDir();
afterAll(() => scratch.cleanup());
const iface: Interface = TicketBroker__factory.createInterface();
const winner = (nonce: bigint): WinningTicket => ({
  ticket: {
    recipient: "0x00000000000000000000000000000000000000A1",
    sender: "0x00000000000000000000000000000000000000C1",
    faceValue: 5n,
    winProb: 1n << 255n,
    senderNonce: nonce,
    recipientRandHash: recipientRandHash(3n),
    expiration: 2_000_000_000n,
    auxData: ZeroHash,
  },
  signature: `0x${"11".repeat(65)}`,
  recipientRand: 3n,
});

/** A broker whose redemptions follow `script`: "ok", a transient RPC failure, or a revert with a custom error. */
function fakeBroker(script: ("ok" | "rpc" | "redeemed")[]): { broker: TicketBroker; calls: bigint[] } {
  const calls: bigint[] = [];
  const broker = {
    runner: null,
    redeemWinningTicket: (t: WinningTicket["ticket"]) => {
      calls.push(t.senderNonce);
      const next = script.shift() ?? "ok";
      if (next === "rpc") return Promise.reject(new Error("connect ECONNREFUSED 127.0.0.1:8545"));
      if (next === "redeemed") return Promise.reject(Object.assign(new Error("execution reverted"), { data: iface.encodeErrorResult("TicketAlreadyRedeemed", [ZeroHash]) }));
      return Promise.resolve({ wait: () => Promise.resolve({ hash: "0xabc" }) });
    },
  };
  return { broker: broker as unknown as TicketBroker, calls };
}

interface LogLine {
  level: number;
  msg: string;
  err?: string;
}

function capture(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger: Logger = pino({ level: "info" }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { logger, lines };
}

describe("TicketRedeemer", () => {
  it("stores a winner, retries a transient failure at the next pass and logs it, and redeems it then", async () => {
    const store = TicketStore.open(`${scratch.dir}/retry.sqlite`);
    const { broker, calls } = fakeBroker(["rpc", "ok"]);
    const { logger, lines } = capture();
    const r = new TicketRedeemer({ broker, store, logger });
    r.add("0x01", winner(1n));
    // add's own pass runs first and fails; this pass, queued behind it, finds the winner pending and redeems it
    expect(await r.pass()).toBe(1);
    expect(calls).toEqual([1n, 1n]);
    expect(store.get("0x01")).toMatchObject({ state: "redeemed", attempts: 1 });
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [40, "winning ticket redemption failed; retrying at the next pass"],
      [30, "winning ticket redeemed"],
    ]);
    expect(lines[0]!.err).toBe("connect ECONNREFUSED 127.0.0.1:8545");
    await r.stop();
    store.close();
  });

  it("gives up at once on a final error, naming it, and keeps pending winners across a restart", async () => {
    const path = `${scratch.dir}/final.sqlite`;
    const store = TicketStore.open(path);
    const { broker } = fakeBroker(["redeemed"]);
    const { logger, lines } = capture();
    const r = new TicketRedeemer({ broker, store, logger });
    r.add("0x02", winner(2n));
    await r.stop();
    expect(store.get("0x02")).toMatchObject({ state: "failed", attempts: 1 });
    expect(lines.map((l) => [l.level, l.msg, l.err])).toEqual([[50, "winning ticket could not be redeemed; given up", `TicketAlreadyRedeemed: ticket ${ZeroHash} was redeemed already`]]);
    // a winner stored while the chain was down is redeemed by the next run
    store.add("0x03", winner(3n));
    store.close();
    const reopened = TicketStore.open(path);
    const next = new TicketRedeemer({ broker: fakeBroker(["ok"]).broker, store: reopened, logger: pino({ level: "silent" }) });
    expect(await next.pass()).toBe(1);
    expect(reopened.get("0x03")?.state).toBe("redeemed");
    await next.stop();
    reopened.close();
  });
});
