import { Option, type Command } from "commander";
import { formatEther } from "ethers";
import { InvalidArgumentError } from "../../protocol/errors.js";
import type { RemotePipelineOptions } from "../remotePipeline.js";
import { Ledger } from "../wallet/ledger.js";
import { DEFAULT_WALLET_PATH, openWallet } from "../wallet/openWallet.js";
import { integer, positiveTokenAmount } from "../commands/options.js";
import { DEFAULT_CHANNEL_TOKENS, Payer } from "./payer.js";
import { TicketLedger } from "./ticketLedger.js";
import { DEFAULT_TICKET_FACE_VALUE_WEI, TicketRoutePayer } from "./ticketRoutePayer.js";

/** How a wallet pays its route: a payment channel per server, or tickets drawn on one TicketBroker deposit. */
export const PAY_METHODS = ["channels", "tickets"] as const;
export type PayMethod = (typeof PAY_METHODS)[number];

export interface PaymentFlags {
  route?: string[];
  wallet?: string;
  rpc?: string;
  deployment?: string;
  maxCostPerQuery?: bigint;
  maxCostPerDay?: bigint;
  channelTokens: number;
  pay?: PayMethod;
  ticketFaceValue?: bigint;
}

/** The flags with which `efed generate` pays its route. */
export function addPaymentOptions(c: Command): Command {
  return c
    .addOption(new Option("--wallet <file>", `with --rpc: pay each server on the route per token from this keystore (e.g. ${DEFAULT_WALLET_PATH}); without it, priced servers refuse the work`))
    .option("--max-cost-per-query <tokens>", "with --wallet: stop before a step would make this generation cost more", positiveTokenAmount)
    .option("--max-cost-per-day <tokens>", "with --wallet: stop before a step would make this wallet's spending today (UTC) more", positiveTokenAmount)
    .option("--channel-tokens <n>", "with --wallet: a new channel's deposit pays for this many tokens at its server's price", integer(1), DEFAULT_CHANNEL_TOKENS)
    .addOption(new Option("--pay <method>", "with --wallet: pay each server through a payment channel, or with tickets drawn on the wallet's ticket deposit (efed wallet fund)").choices(PAY_METHODS).default("channels"))
    .option(
      "--ticket-face-value <tokens>",
      `with --pay tickets: the face value tickets aim for (default ${formatEther(DEFAULT_TICKET_FACE_VALUE_WEI)}); at or below a step's cost every ticket is certain`,
      positiveTokenAmount,
    );
}

/** A paying generation: the pipeline options that pay, what it cost so far, and the wallet to close. */
export interface GenerationPayment {
  pipelineOptions: Pick<RemotePipelineOptions, "payment" | "onReceipt">;
  /** "cost: 0.016 EFED" and one line per server paid. */
  report(): string;
  /** What the work of `sessionIds` cost (token base units). */
  costOf(sessionIds: readonly string[]): bigint;
  close(): void;
}

/** The wallet that pays this generation, or undefined when it does not pay (no --wallet). */
export async function paymentFor(f: PaymentFlags): Promise<GenerationPayment | undefined> {
  if (f.wallet === undefined) {
    if (f.maxCostPerQuery !== undefined || f.maxCostPerDay !== undefined) throw new InvalidArgumentError("--max-cost-per-query and --max-cost-per-day limit a wallet: give --wallet too");
    if (f.pay === "tickets" || f.ticketFaceValue !== undefined) throw new InvalidArgumentError("--pay tickets and --ticket-face-value pay from a wallet's ticket deposit: give --wallet too");
    return undefined;
  }
  if (f.rpc === undefined) throw new InvalidArgumentError("--wallet pays servers checked on chain: give --rpc too");
  if (f.deployment === undefined) throw new InvalidArgumentError("--wallet needs --deployment FILE: the contracts this client trusts");
  if (f.pay !== "tickets" && f.ticketFaceValue !== undefined) throw new InvalidArgumentError("--ticket-face-value sets the tickets' face value: give --pay tickets too");
  if (f.pay === "tickets" && f.maxCostPerDay !== undefined) throw new InvalidArgumentError("--max-cost-per-day counts channel vouchers: with --pay tickets use --max-cost-per-query");
  const wallet = await openWallet(f.wallet, f.rpc, f.deployment);
  let tickets: TicketLedger | undefined;
  let payer: Payer | TicketRoutePayer;
  try {
    if (f.pay === "tickets") {
      tickets = TicketLedger.open(Ledger.pathFor(f.wallet));
      payer = new TicketRoutePayer({
        chain: wallet.chain,
        ledger: tickets,
        ...(f.ticketFaceValue === undefined ? {} : { targetFaceValueWei: f.ticketFaceValue }),
        ...(f.maxCostPerQuery === undefined ? {} : { maxPerQueryWei: f.maxCostPerQuery }),
      });
    } else {
      payer = new Payer({
        chain: wallet.chain,
        ledger: wallet.ledger,
        channelTokens: f.channelTokens,
        ...(f.maxCostPerQuery === undefined ? {} : { maxPerQueryWei: f.maxCostPerQuery }),
        ...(f.maxCostPerDay === undefined ? {} : { maxPerDayWei: f.maxCostPerDay }),
      });
    }
  } catch (err) {
    tickets?.close();
    wallet.close();
    throw err;
  }
  return {
    pipelineOptions: {
      payment: payer,
      onReceipt: (r) =>
        wallet.ledger.recordReceipt({
          sessionId: r.receipt.sessionId,
          step: r.receipt.step,
          server: r.receipt.server,
          tokens: r.receipt.tokens,
          signature: r.chain.signature,
          chainLastStep: r.chain.lastStep,
          chainHead: r.chain.head,
          receipt: JSON.stringify(r.receipt, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)),
        }),
    },
    costOf: (sessionIds) => payer.costOf(sessionIds),
    report: () => [`cost: ${formatEther(payer.total)} EFED`, ...[...payer.spent].map(([server, amount]) => `  ${server}: ${formatEther(amount)} EFED`)].join("\n"),
    close: () => {
      tickets?.close();
      wallet.close();
    },
  };
}
