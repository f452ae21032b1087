import { formatEther, type JsonRpcProvider } from "ethers";
import { AuditLedger__factory, Commitments__factory, DataRequests__factory, Disputes__factory, PaymentChannels__factory } from "../../types/ethers-contracts/index.js";
import type { ProtocolAddresses } from "../lib/deployProtocol.js";

/** Disputes' Outcome enum (contracts/interfaces/IDisputes.sol). */
const OUTCOMES = ["none", "server at fault", "server correct", "no quorum"] as const;

/**
 * Follows the protocol's events on chain and says each in one line, naming accounts by their
 * devnet role: batches posted, audits recorded, vouchers redeemed, disputes opened and settled.
 * Reads from `fromBlock` every `pollMs`; `stop()` ends it. What the demo shows after its answer.
 */
export function followChainEvents(
  provider: JsonRpcProvider,
  addresses: ProtocolAddresses,
  o: { fromBlock: number; pollMs: number; nameOf: (address: string) => string; channelServer: (channelId: string) => Promise<string>; say: (line: string) => void },
): { stop(): void } {
  const commitments = Commitments__factory.connect(addresses.commitments, provider);
  const ledger = AuditLedger__factory.connect(addresses.auditLedger, provider);
  const channels = PaymentChannels__factory.connect(addresses.channels, provider);
  const disputes = Disputes__factory.connect(addresses.disputes, provider);
  const requests = DataRequests__factory.connect(addresses.dataRequests, provider);
  const name = o.nameOf;
  let next = o.fromBlock;
  let stopped = false;

  const readUpTo = async (to: number): Promise<string[]> => {
    const lines: { at: number; text: string }[] = [];
    const at = (e: { blockNumber: number; index: number }): number => e.blockNumber * 1e6 + e.index;
    for (const e of await commitments.queryFilter(commitments.filters.BatchPosted(), next, to)) {
      lines.push({ at: at(e), text: `batch ${e.args.batchId} posted by ${name(e.args.server)}: ${e.args.receiptCount} receipts` });
    }
    for (const e of await ledger.queryFilter(ledger.filters.PassesRecorded(), next, to)) {
      lines.push({ at: at(e), text: `batch ${e.args.batchId} of ${name(e.args.server)} audited by ${name(e.args.verifier)}: ${e.args.leaves.length} passes recorded on chain (reward ${formatEther(e.args.reward)} EFED)` });
    }
    for (const e of await channels.queryFilter(channels.filters.VoucherRedeemed(), next, to)) {
      lines.push({ at: at(e), text: `${name(await o.channelServer(e.args.channelId))} redeemed vouchers: paid ${formatEther(e.args.paidToServer)} EFED (fee ${formatEther(e.args.fee)})` });
    }
    for (const e of await disputes.queryFilter(disputes.filters.DisputeOpened(), next, to)) {
      lines.push({ at: at(e), text: `DISPUTE ${e.args.disputeId} opened by ${name(e.args.challenger)} against ${name(e.args.server)} (batch ${e.args.batchId})` });
    }
    for (const e of await disputes.queryFilter(disputes.filters.DisputeSettled(), next, to)) {
      const outcome = OUTCOMES[Number(e.args.outcome)] ?? `outcome ${e.args.outcome}`;
      const server = name((await disputes.dispute(e.args.disputeId)).server);
      lines.push({
        at: at(e),
        text: `DISPUTE ${e.args.disputeId} settled: ${outcome} (${e.args.faultVotes} fault, ${e.args.correctVotes} correct); ${server} slashed ${formatEther(e.args.slashed)} EFED, ${formatEther(e.args.toChallenger)} to the challenger`,
      });
    }
    for (const e of await requests.queryFilter(requests.filters.DataRequested(), next, to)) {
      lines.push({ at: at(e), text: `DATA REQUEST ${e.args.requestId}: ${name(e.args.requester)} asks ${name(e.args.server)} on chain for a step it withheld (batch ${e.args.batchId})` });
    }
    for (const e of await requests.queryFilter(requests.filters.DataPosted(), next, to)) {
      lines.push({ at: at(e), text: `DATA REQUEST ${e.args.requestId}: ${name(e.args.server)} posted the step` });
    }
    for (const e of await requests.queryFilter(requests.filters.RequestSlashed(), next, to)) {
      lines.push({ at: at(e), text: `DATA REQUEST ${e.args.requestId} unanswered: ${name(e.args.server)} slashed ${formatEther(e.args.slashed)} EFED, ${formatEther(e.args.toRequester)} to the requester` });
    }
    return lines.sort((a, b) => a.at - b.at).map((l) => l.text);
  };

  const poll = async (): Promise<void> => {
    const head = await provider.getBlockNumber();
    if (head < next) return;
    const lines = await readUpTo(head);
    next = head + 1;
    if (!stopped) for (const line of lines) o.say(line);
  };
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    poll()
      .catch(() => undefined) // a node that is stopping: the next poll tries again, or stop() ends it
      .finally(() => (busy = false));
  }, o.pollMs);
  return {
    stop: () => {
      stopped = true;
      clearInterval(timer);
    },
  };
}
