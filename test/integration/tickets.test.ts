import { JsonRpcProvider, NonceManager, Wallet, hexlify, keccak256, parseEther, randomBytes, toUtf8Bytes, type Signer } from "ethers";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TicketLedger } from "../../client/payment/ticketLedger.js";
import { TicketPayer } from "../../client/payment/ticketPayer.js";
import { TicketRedeemer, senderReader } from "../../node/chain/ticketRedeemer.js";
import { TicketGate } from "../../node/server/ticketGate.js";
import { TicketStore } from "../../node/store/ticketStore.js";
import { decodeContractError } from "../../protocol/contractErrors.js";
import { stepCost } from "../../protocol/payment.js";
import { signTicketSync, ticketAccountId, ticketDomain, type Ticket } from "../../protocol/tickets.js";
import { ErrorCode, MessageType, WireError, decodeMessage, encodeMessage, type Message, type PayTicket } from "../../protocol/wire.js";
import { DEVNET_PARAMS, deployProtocol, type Protocol } from "../../scripts/lib/deployProtocol.js";
import { TicketBroker__factory } from "../../types/ethers-contracts/index.js";
import { scratchDir } from "../engine/helpers.js";
import { startHardhatNode, type LocalChain } from "../support/hardhatNode.js";

const PRICE = parseEther("0.001");
const FEE_BPS = DEVNET_PARAMS.feeBps;
const CHALLENGE = keccak256(toUtf8Bytes("connection challenge"));
const scratch = scratchDir();
const serverKeys = [new Wallet(hexlify(randomBytes(32))), new Wallet(hexlify(randomBytes(32)))];
const clientKey = new Wallet(hexlify(randomBytes(32)));
/** A generation: one prefill of 7 prompt tokens, then 9 one-token decode steps. */
const STEP_TOKENS = [7, 1, 1, 1, 1, 1, 1, 1, 1, 1];
const TOKENS = STEP_TOKENS.reduce((a, b) => a + b, 0);

let chain: LocalChain;
let provider: JsonRpcProvider;
let protocol: Protocol;
let brokerAddress: string;

/** Sends a message through the wire codec, as a peer would receive it (limits and validation included). */
function overWire<T extends Message>(m: T): T {
  return decodeMessage(encodeMessage(m)) as T;
}

interface TicketServer {
  key: Wallet;
  gate: TicketGate;
  redeemer: TicketRedeemer;
  store: TicketStore;
}

function ticketServer(key: Wallet, storePath: string, seed: bigint): TicketServer {
  const broker = TicketBroker__factory.connect(brokerAddress, new NonceManager(key.connect(provider)));
  const store = TicketStore.open(storePath);
  const redeemer = new TicketRedeemer({ broker, store, logger: pino({ level: "silent" }) });
  let n = seed;
  const gate = new TicketGate({
    pricePerToken: PRICE,
    server: key.address,
    ticketDomain: ticketDomain(31337n, brokerAddress),
    readSender: senderReader(broker, key.address),
    onWinner: (hash, w) => redeemer.add(hash, w),
    randomRand: () => (n = BigInt(keccak256(toUtf8Bytes(`rand ${n}`)))), // seeded: the same winners every run
  });
  return { key, gate, redeemer, store };
}

beforeAll(async () => {
  chain = await startHardhatNode();
  // no request cache: two NonceManagers of one key (the tests' servers) must each read the current count
  provider = new JsonRpcProvider(chain.url, undefined, { staticNetwork: true, pollingInterval: 50, cacheTimeout: -1 });
  const admin: Signer = new NonceManager(await provider.getSigner(0));
  protocol = await deployProtocol(admin);
  brokerAddress = await protocol.ticketBroker.getAddress();
  const variant = keccak256(toUtf8Bytes("tickets test manifest"));
  await (await protocol.registry.registerVariant(variant, 8, "ipfs://tickets-test")).wait();
  const stake = await protocol.staking.minServerStake(4);
  for (const [i, key] of serverKeys.entries()) {
    await (await admin.sendTransaction({ to: key.address, value: parseEther("10") })).wait();
    await (await protocol.token.mint(key.address, stake)).wait();
    const signer = new NonceManager(key.connect(provider));
    await (await protocol.token.connect(signer).approve(await protocol.staking.getAddress(), stake)).wait();
    await (await protocol.staking.connect(signer).deposit(stake)).wait();
    await (await protocol.staking.connect(signer).registerServer(variant, i * 4, i * 4 + 4, `ws://127.0.0.1:${9100 + i}`, PRICE)).wait();
  }
  await (await admin.sendTransaction({ to: clientKey.address, value: parseEther("10") })).wait();
  await (await protocol.token.mint(clientKey.address, parseEther("100"))).wait();
  const client = new NonceManager(clientKey.connect(provider));
  await (await protocol.token.connect(client).approve(brokerAddress, parseEther("100"))).wait();
  await (await protocol.ticketBroker.connect(client).fund(parseEther("10"), parseEther("1"))).wait();
}, 120_000);

afterAll(async () => {
  provider?.destroy();
  await chain?.stop();
  scratch.cleanup();
});

/** Binds `sessionId` on `s` for `payer`, over the wire both ways. */
async function bind(s: TicketServer, payer: TicketPayer, sessionId: string): Promise<void> {
  const bound = overWire(await s.gate.bind(overWire(payer.bindMessage(1, s.key.address, sessionId, CHALLENGE)), CHALLENGE));
  expect(bound.type).toBe(MessageType.TicketsBound);
  payer.accepted(s.key.address, bound);
}

/** What `s` received from the broker in WinningTicketRedeemed events: paid to it plus fees. */
async function redeemedFor(s: TicketServer): Promise<bigint> {
  const events = await protocol.ticketBroker.queryFilter(protocol.ticketBroker.filters.WinningTicketRedeemed(undefined, clientKey.address, s.key.address));
  return events.reduce((sum, e) => sum + e.args.paidToRecipient + e.args.fee, 0n);
}

describe("tickets on a Hardhat node", () => {
  it("a client pays two priced servers with certain tickets over a generation; every winner is redeemed for exactly price × tokens", async () => {
    const servers = serverKeys.map((k, i) => ticketServer(k, `${scratch.dir}/server-${i}.sqlite`, BigInt(i + 1)));
    const ledger = TicketLedger.open(`${scratch.dir}/wallet.sqlite`);
    // a target face value below every step's price: each ticket is certain (p = 1), its face value what the step owes
    const payer = new TicketPayer({ key: clientKey.signingKey, domain: ticketDomain(31337n, brokerAddress), ledger, targetFaceValueWei: 1n });
    const sessionId = keccak256(toUtf8Bytes("generation 1"));
    for (const s of servers) await bind(s, payer, sessionId);
    const before = await Promise.all(servers.map((s) => protocol.token.balanceOf(s.key.address)));
    let owed = 0n;
    for (const [step, tokens] of STEP_TOKENS.entries()) {
      owed += stepCost(PRICE, tokens);
      for (const s of servers) {
        s.gate.charge(sessionId, BigInt(step), tokens);
        const paid = overWire(await s.gate.pay(overWire(payer.payStep(2, s.key.address, sessionId, stepCost(PRICE, tokens)))));
        expect([paid.owed, paid.covered]).toEqual([owed, owed]);
        payer.accepted(s.key.address, paid);
      }
    }
    for (const s of servers) {
      await s.redeemer.pass();
      expect(s.store.pending()).toEqual([]);
      expect(s.store.all().map((w) => w.state)).toEqual(STEP_TOKENS.map(() => "redeemed"));
      expect(await redeemedFor(s)).toBe(PRICE * BigInt(TOKENS));
    }
    const after = await Promise.all(servers.map((s) => protocol.token.balanceOf(s.key.address)));
    const net = PRICE * BigInt(TOKENS) - (PRICE * BigInt(TOKENS) * FEE_BPS) / 10_000n;
    // fees are taken per ticket (rounded down each time): with these amounts every division is exact
    expect(after.map((a, i) => a - before[i]!)).toEqual([net, net]);
    expect(ledger.totals(31337n, brokerAddress).map((t) => [t.recipient, t.tickets, t.expectedValue])).toEqual(
      serverKeys.map((k) => [k.address, STEP_TOKENS.length, PRICE * BigInt(TOKENS)]).sort((a, b) => (String(a[0]) < String(b[0]) ? -1 : 1)),
    );
    for (const s of servers) {
      await s.redeemer.stop();
      s.store.close();
    }
    ledger.close();
  });

  it("refuses a ticket for another server, a replay, another chain or contract, and one worth less than owed, with clear errors", async () => {
    const [s] = [ticketServer(serverKeys[0]!, `${scratch.dir}/server-bad.sqlite`, 99n)];
    const ledger = TicketLedger.open(`${scratch.dir}/wallet-bad.sqlite`);
    const domain = ticketDomain(31337n, brokerAddress);
    const payer = new TicketPayer({ key: clientKey.signingKey, domain, ledger, targetFaceValueWei: 1n });
    const sessionId = keccak256(toUtf8Bytes("generation 2"));
    await bind(s, payer, sessionId);
    const owed = stepCost(PRICE, 3);
    s.gate.charge(sessionId, 0n, 3);
    const refused = async (m: PayTicket): Promise<WireError> => {
      try {
        await s.gate.pay(overWire(m));
      } catch (err) {
        if (err instanceof WireError) return err;
        throw err;
      }
      throw new Error("the ticket was accepted");
    };
    const good = payer.payStep(3, s.key.address, sessionId, owed);
    const resign = (t: Ticket, d = domain): PayTicket => ({ ...good, ticket: t, signature: signTicketSync(clientKey.signingKey, d, t) });

    const wrongRecipient = await refused(resign({ ...good.ticket, recipient: serverKeys[1]!.address }));
    expect([wrongRecipient.wireCode, wrongRecipient.message]).toEqual([ErrorCode.Forbidden, `ticket ${good.ticket.senderNonce} of session ${sessionId} pays ${serverKeys[1]!.address}, not this server ${s.key.address}`]);
    for (const other of [ticketDomain(1n, brokerAddress), ticketDomain(31337n, await protocol.channels.getAddress())]) {
      const e = await refused(resign(good.ticket, other));
      expect(e.wireCode).toBe(ErrorCode.Forbidden);
      expect(e.message).toMatch(/recovers to 0x[0-9a-fA-F]{40}, not the client .*another chain or contract/);
    }
    const under = await refused(payer.payStep(4, s.key.address, sessionId, owed - 1n));
    expect([under.wireCode, under.payment]).toEqual([ErrorCode.PaymentRequired, { channelId: ticketAccountId(clientKey.address), owed, covered: 0n }]);
    expect(under.message).toBe(
      `ticket ${good.ticket.senderNonce + 1n} of session ${sessionId} is refused: its expected value ${owed - 1n} leaves 1 of the ${owed} owed uncovered (covered so far: 0)`,
    );
    // the good ticket is accepted; being certain, it wins and the commitment rotates: sent again, it is stale
    const paid = await s.gate.pay(overWire(good));
    expect([paid.owed, paid.covered]).toEqual([owed, owed]);
    const stale = await refused(good);
    expect([stale.wireCode, stale.message]).toEqual([
      ErrorCode.PaymentRequired,
      `ticket ${good.ticket.senderNonce} of session ${sessionId} names commitment ${good.ticket.recipientRandHash}; the current one is ${paid.recipientRandHash}`,
    ]);
    // a replay under the current commitment: tickets at p = 2^-8 until one loses (a loser keeps the commitment), then that one again
    const lowOdds = new TicketPayer({ key: clientKey.signingKey, domain, ledger, targetFaceValueWei: 256n });
    lowOdds.accepted(s.key.address, paid);
    let loser: PayTicket | undefined;
    while (loser === undefined) {
      const m = lowOdds.payStep(6, s.key.address, sessionId, 1n);
      expect(m.ticket.winProb).toBe(1n << 248n);
      const r = await s.gate.pay(overWire(m));
      lowOdds.accepted(s.key.address, r);
      if (r.recipientRandHash === m.ticket.recipientRandHash) loser = m;
    }
    const replay = await refused(loser);
    expect([replay.wireCode, replay.message]).toEqual([ErrorCode.PaymentRequired, `ticket ${loser.ticket.senderNonce} of session ${sessionId} was already accepted: a replay`]);
    // on chain, a redeemed winner cannot be redeemed again
    await s.redeemer.pass();
    const winners = s.store.all();
    expect(winners[0]!.ticket.senderNonce).toBe(good.ticket.senderNonce);
    expect(winners.every((w) => w.state === "redeemed")).toBe(true);
    const broker = TicketBroker__factory.connect(brokerAddress, s.key.connect(provider));
    const err = await broker.redeemWinningTicket.staticCall(winners[0]!.ticket, winners[0]!.signature, winners[0]!.recipientRand).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(decodeContractError(err)?.name).toBe("TicketAlreadyRedeemed");
    await s.redeemer.stop();
    s.store.close();
    ledger.close();
  });
});
