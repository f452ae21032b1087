import type { ChannelView, DisputeView, VerifierRewardView } from "./snapshot.js";

/** A contract event the dashboard follows, decoded, with where it happened. */
export interface ChainEvent {
  name: string;
  args: Record<string, unknown>;
  block: number;
  txHash: string;
}

interface ServerTally {
  batchesPosted: number;
  receiptsCommitted: number;
  receiptsAudited: number;
  slashedWei: bigint;
}

interface DisputeTally {
  view: Omit<DisputeView, "serverLockedWei" | "slashedWei" | "toChallengerWei">;
  serverLocked: bigint;
  slashed: bigint;
  toChallenger: bigint;
}

interface ChannelTally {
  id: string;
  client: string;
  server: string;
  deposit: bigint;
  paid: bigint;
  vouchers: number;
  closed: boolean;
}

export interface ChainLogLimits {
  /** Disputes kept (the newest; default 200). */
  maxDisputes?: number;
  /** Channels kept (the newest; default 200). */
  maxChannels?: number;
}

const OUTCOMES = ["none", "serverAtFault", "serverCorrect", "noQuorum"] as const;

/**
 * What the protocol's events say, folded into counters: batches posted and receipts audited per
 * server, stake slashed, disputes with their votes and outcome, payment channels and vouchers,
 * verifier rewards. Events must be applied in chain order, each once (ChainScanner does). Lists
 * are bounded: only the newest disputes and channels are kept, the totals count every one.
 */
export class ChainLog {
  private readonly servers = new Map<string, ServerTally>();
  private readonly disputes = new Map<number, DisputeTally>();
  private readonly channels = new Map<string, ChannelTally>();
  private readonly rewards = new Map<string, { allocated: bigint; claimed: bigint; passes: number }>();
  private readonly maxDisputes: number;
  private readonly maxChannels: number;
  totals = { batchesPosted: 0, receiptsCommitted: 0, receiptsAudited: 0, channelsOpened: 0, vouchersRedeemed: 0, paidToServers: 0n, fees: 0n };

  constructor(limits: ChainLogLimits = {}) {
    this.maxDisputes = limits.maxDisputes ?? 200;
    this.maxChannels = limits.maxChannels ?? 200;
  }

  apply(e: ChainEvent): void {
    const a = e.args;
    switch (e.name) {
      case "BatchPosted": {
        const t = this.server(String(a.server));
        const receipts = Number(a.receiptCount);
        t.batchesPosted++;
        t.receiptsCommitted += receipts;
        this.totals.batchesPosted++;
        this.totals.receiptsCommitted += receipts;
        break;
      }
      case "PassesRecorded": {
        // the server is credited with the largest record of a batch; each record still is receipts someone re-executed
        const leaves = (a.leaves as readonly unknown[]).length;
        this.server(String(a.server)).receiptsAudited += leaves;
        this.totals.receiptsAudited += leaves;
        this.reward(String(a.verifier)).passes += leaves;
        break;
      }
      case "Slashed":
        this.server(String(a.operator)).slashedWei += a.amount as bigint;
        break;
      case "DisputeOpened":
        this.disputes.set(Number(a.disputeId), {
          view: {
            id: Number(a.disputeId),
            batchId: Number(a.batchId),
            server: String(a.server),
            challenger: String(a.challenger),
            status: "open",
            outcome: "none",
            committee: [],
            votes: [],
            faultVotes: 0,
            correctVotes: 0,
            openedTx: e.txHash,
          },
          serverLocked: a.serverLocked as bigint,
          slashed: 0n,
          toChallenger: 0n,
        });
        prune(this.disputes, this.maxDisputes);
        break;
      case "CommitteeDrawn":
        this.withDispute(a.disputeId, (d) => {
          d.view.status = "voting";
          d.view.committee = (a.members as readonly unknown[]).map(String);
        });
        break;
      case "VoteRevealed":
        this.withDispute(a.disputeId, (d) => d.view.votes.push({ voter: String(a.voter), serverAtFault: a.serverAtFault === true }));
        break;
      case "DisputeSettled":
        this.withDispute(a.disputeId, (d) => {
          d.view.status = "settled";
          d.view.outcome = OUTCOMES[Number(a.outcome)] ?? "none";
          d.view.faultVotes = Number(a.faultVotes);
          d.view.correctVotes = Number(a.correctVotes);
          d.view.settledTx = e.txHash;
          d.slashed = a.slashed as bigint;
          d.toChallenger = a.toChallenger as bigint;
        });
        break;
      case "ChannelOpened":
        this.channels.set(String(a.channelId), { id: String(a.channelId), client: String(a.client), server: String(a.server), deposit: a.deposit as bigint, paid: 0n, vouchers: 0, closed: false });
        this.totals.channelsOpened++;
        prune(this.channels, this.maxChannels);
        break;
      case "ChannelToppedUp":
        this.withChannel(a.channelId, (c) => (c.deposit = a.deposit as bigint));
        break;
      case "VoucherRedeemed": {
        const paid = a.paidToServer as bigint;
        const fee = a.fee as bigint;
        this.totals.vouchersRedeemed++;
        this.totals.paidToServers += paid;
        this.totals.fees += fee;
        this.withChannel(a.channelId, (c) => {
          c.paid += paid + fee;
          c.vouchers++;
        });
        break;
      }
      case "ChannelClosed":
        this.withChannel(a.channelId, (c) => (c.closed = true));
        break;
      case "RewardAllocated":
        this.reward(String(a.verifier)).allocated += a.amount as bigint;
        break;
      case "RewardClaimed":
        this.reward(String(a.verifier)).claimed += a.amount as bigint;
        break;
    }
  }

  /** The counters of `operator` (zeros when no event named it). */
  serverTally(operator: string): Readonly<ServerTally> {
    return this.servers.get(operator.toLowerCase()) ?? { batchesPosted: 0, receiptsCommitted: 0, receiptsAudited: 0, slashedWei: 0n };
  }

  /** Disputes, newest first. */
  disputeViews(): DisputeView[] {
    return [...this.disputes.values()].reverse().map((d) => ({
      ...d.view,
      committee: [...d.view.committee],
      votes: [...d.view.votes],
      serverLockedWei: d.serverLocked.toString(),
      slashedWei: d.slashed.toString(),
      toChallengerWei: d.toChallenger.toString(),
    }));
  }

  /** Channels, newest first. */
  channelViews(): ChannelView[] {
    return [...this.channels.values()].reverse().map((c) => ({
      id: c.id,
      client: c.client,
      server: c.server,
      depositWei: c.deposit.toString(),
      paidWei: c.paid.toString(),
      vouchersRedeemed: c.vouchers,
      closed: c.closed,
    }));
  }

  rewardViews(): VerifierRewardView[] {
    return [...this.rewards.entries()].map(([verifier, r]) => ({
      verifier,
      allocatedWei: r.allocated.toString(),
      claimedWei: r.claimed.toString(),
      passesRecorded: r.passes,
    }));
  }

  private server(operator: string): ServerTally {
    const key = operator.toLowerCase();
    let t = this.servers.get(key);
    if (t === undefined) this.servers.set(key, (t = { batchesPosted: 0, receiptsCommitted: 0, receiptsAudited: 0, slashedWei: 0n }));
    return t;
  }

  private reward(verifier: string): { allocated: bigint; claimed: bigint; passes: number } {
    let r = this.rewards.get(verifier);
    if (r === undefined) this.rewards.set(verifier, (r = { allocated: 0n, claimed: 0n, passes: 0 }));
    return r;
  }

  private withDispute(id: unknown, change: (d: DisputeTally) => void): void {
    const d = this.disputes.get(Number(id));
    if (d !== undefined) change(d); // pruned (older than the newest maxDisputes): its totals are gone with it
  }

  private withChannel(id: unknown, change: (c: ChannelTally) => void): void {
    const c = this.channels.get(String(id));
    if (c !== undefined) change(c);
  }
}

/** Drops the oldest entries of `map` (insertion order) beyond `max`. */
function prune<K, V>(map: Map<K, V>, max: number): void {
  for (const key of map.keys()) {
    if (map.size <= max) return;
    map.delete(key);
  }
}
