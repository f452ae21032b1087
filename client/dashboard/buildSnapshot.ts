import type { ChainLog } from "./chainLog.js";
import { fromWad, type ChainRead } from "./chainWatch.js";
import type { ModelView, Sample, ServerView, Snapshot } from "./snapshot.js";

/** The dashboard's own view of a server's health (see ServerMeasurements). */
export interface Health {
  health: "up" | "down";
  reason?: string;
  stepMs?: number;
}

export interface SnapshotInputs {
  read: ChainRead;
  log: ChainLog;
  /** Health by `healthKey(endpoint, operator)`. */
  health: ReadonlyMap<string, Health>;
  /** Tokens per second by lowercase operator address (from the gateway's counters). */
  tokensPerS: ReadonlyMap<string, number>;
  gateway?: { sessions: number; tokens: number };
  txUrl: string;
  at: number;
  error?: string;
}

export function healthKey(endpoint: string, operator: string): string {
  return `${endpoint} ${operator.toLowerCase()}`;
}

/** Joins what the chain says, what the events added up to, the measurements and the gateway's rates into one Snapshot. */
export function buildSnapshot(i: SnapshotInputs): Snapshot {
  const theta = fromWad(i.read.thetaWad);
  const models: ModelView[] = i.read.variants.map((v) => ({
    id: v.id,
    name: v.name,
    numLayers: v.numLayers,
    retired: v.retired,
    servers: v.servers.map((s): ServerView => {
      const tally = i.log.serverTally(s.operator);
      const h = i.health.get(healthKey(s.endpoint, s.operator));
      return {
        operator: s.operator,
        endpoint: s.endpoint,
        firstLayer: s.firstLayer,
        lastLayer: s.lastLayer,
        pricePerTokenWei: s.pricePerToken.toString(),
        stakeWei: s.stake.toString(),
        slashedWei: tally.slashedWei.toString(),
        trust: fromWad(s.trustWad),
        belowTheta: s.trustWad < i.read.thetaWad,
        collateralized: s.collateralized,
        eligible: s.eligible,
        health: h?.health ?? "unmeasured",
        ...(h?.reason === undefined ? {} : { reason: h.reason }),
        ...(h?.stepMs === undefined ? {} : { stepMs: Math.round(h.stepMs * 10) / 10 }),
        tokensPerS: i.tokensPerS.get(s.operator.toLowerCase()) ?? 0,
        batchesPosted: tally.batchesPosted,
        receiptsCommitted: tally.receiptsCommitted,
        receiptsAudited: tally.receiptsAudited,
      };
    }),
  }));
  const t = i.log.totals;
  return {
    at: i.at,
    chainId: i.read.chainId,
    block: i.read.block,
    scannedBlock: i.read.scannedBlock,
    theta,
    models,
    work: { batchesPosted: t.batchesPosted, receiptsCommitted: t.receiptsCommitted, receiptsAudited: t.receiptsAudited },
    money: {
      channelsOpened: t.channelsOpened,
      vouchersRedeemed: t.vouchersRedeemed,
      paidToServersWei: t.paidToServers.toString(),
      feesWei: t.fees.toString(),
      rewardPoolWei: i.read.rewardPoolWei.toString(),
      channels: i.log.channelViews(),
      rewards: i.log.rewardViews(),
    },
    disputes: i.log.disputeViews(),
    ...(i.gateway === undefined ? {} : { gateway: i.gateway }),
    txUrl: i.txUrl,
    ...(i.error === undefined ? {} : { error: i.error }),
  };
}

/** The plot point of a snapshot: each server's trust and tokens/s (a server registered for two variants counts once). */
export function sampleOf(s: Snapshot): Sample {
  const trust: Record<string, number> = {};
  const tokensPerS: Record<string, number> = {};
  for (const m of s.models) {
    for (const v of m.servers) {
      trust[v.operator] = v.trust;
      tokensPerS[v.operator] = v.tokensPerS;
    }
  }
  return { at: s.at, trust, tokensPerS };
}
