import { InvalidArgumentError } from "../../protocol/errors.js";
import { TicketBroker__factory, type TicketBroker } from "../../types/ethers-contracts/index.js";
import { mined, requireTokens, signPermit, type WalletChain } from "./walletChain.js";

/** The wallet's funds in the TicketBroker, token base units; `withdrawableAt` is unix seconds (0: not unlocking). */
export interface TicketDeposit {
  broker: string;
  deposit: bigint;
  reserve: bigint;
  withdrawableAt: bigint;
}

/** The deployment's TicketBroker, connected to the wallet's key; a clear error when the deployment has none. */
export function ticketBroker(c: WalletChain): TicketBroker {
  const address = c.deployment.ticketBroker;
  if (address === undefined) throw new InvalidArgumentError("the deployment file names no ticketBroker: tickets are not available on this deployment");
  return TicketBroker__factory.connect(address, c.signer);
}

export async function ticketDeposit(c: WalletChain): Promise<TicketDeposit> {
  const broker = ticketBroker(c);
  const info = await broker.senderInfo(c.address);
  return { broker: await broker.getAddress(), deposit: info.deposit, reserve: info.reserve, withdrawableAt: info.withdrawableAt };
}

/**
 * Adds `deposit` (what tickets are paid from) and `reserve` (what servers may still draw on when the
 * deposit runs short) in one transaction, with a permit of their sum instead of an approval.
 */
export async function fundTickets(c: WalletChain, deposit: bigint, reserve: bigint): Promise<TicketDeposit> {
  if (deposit < 0n || reserve < 0n || deposit + reserve === 0n) throw new InvalidArgumentError(`a ticket deposit needs a positive amount or reserve, got amount ${deposit} and reserve ${reserve}`);
  const broker = ticketBroker(c);
  await requireTokens(c, deposit + reserve, "the ticket deposit and reserve");
  const { deadline, permit } = await signPermit(c, await broker.getAddress(), deposit + reserve);
  await mined(c, () => broker.fundWithPermit(deposit, reserve, deadline, permit.v, permit.r, permit.s));
  return ticketDeposit(c);
}

/** Starts the unlock: servers stop accepting tickets, and `withdrawTickets` works after the broker's unlock period. */
export async function unlockTickets(c: WalletChain): Promise<TicketDeposit> {
  await mined(c, () => ticketBroker(c).unlock());
  return ticketDeposit(c);
}

/** Takes the whole deposit and reserve back, once the unlock period has passed. Returns what came back. */
export async function withdrawTickets(c: WalletChain): Promise<bigint> {
  const before = await ticketDeposit(c);
  await mined(c, () => ticketBroker(c).withdraw());
  return before.deposit + before.reserve;
}
