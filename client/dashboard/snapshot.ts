/**
 * What the dashboard page is sent: plain JSON shapes (no bigint: amounts are decimal strings of
 * token base units, named `…Wei`; trust is a fraction of 1). Shared by the node side
 * (client/dashboard/*.ts) and the page (client/dashboard/web), so it imports nothing.
 */

/** How a server looks from the dashboard: from the chain, the dashboard's own measurement, and the gateway. */
export interface ServerView {
  operator: string;
  endpoint: string;
  firstLayer: number;
  /** One past the last layer served. */
  lastLayer: number;
  pricePerTokenWei: string;
  /** Bonded stake. */
  stakeWei: string;
  /** Stake taken from it by slashes so far (disputes, data requests, votes against the majority). */
  slashedWei: string;
  trust: number;
  belowTheta: boolean;
  collateralized: boolean;
  eligible: boolean;
  /** up: the dashboard reached it and it is what the chain says; down: it did not (see `reason`). */
  health: "up" | "down" | "unmeasured";
  reason?: string;
  /** Measured time of one 1-token step (a priced server: its round trip), milliseconds. */
  stepMs?: number;
  /** Tokens per second through this server in the gateway, over the last sample. */
  tokensPerS: number;
  batchesPosted: number;
  receiptsCommitted: number;
  receiptsAudited: number;
}

export interface ModelView {
  /** The variant id (manifest hash). */
  id: string;
  /** A readable name: the last part of the manifest URI. */
  name: string;
  numLayers: number;
  retired: boolean;
  servers: ServerView[];
}

export interface DisputeView {
  id: number;
  batchId: number;
  server: string;
  challenger: string;
  status: "open" | "voting" | "settled";
  outcome: "none" | "serverAtFault" | "serverCorrect" | "noQuorum";
  committee: string[];
  /** Revealed votes so far: true = server at fault. */
  votes: { voter: string; serverAtFault: boolean }[];
  faultVotes: number;
  correctVotes: number;
  serverLockedWei: string;
  slashedWei: string;
  toChallengerWei: string;
  openedTx: string;
  settledTx?: string;
}

export interface ChannelView {
  id: string;
  client: string;
  server: string;
  depositWei: string;
  /** Redeemed so far, fees included. */
  paidWei: string;
  vouchersRedeemed: number;
  closed: boolean;
}

export interface VerifierRewardView {
  verifier: string;
  allocatedWei: string;
  claimedWei: string;
  passesRecorded: number;
}

export interface GatewayView {
  /** Sequences the gateway opened on its route (one session per server each). */
  sessions: number;
  tokens: number;
}

export interface Snapshot {
  /** Milliseconds since the epoch when it was taken. */
  at: number;
  chainId: string;
  block: number;
  /** Block the event scan has reached (it catches up in bounded steps). */
  scannedBlock: number;
  theta: number;
  models: ModelView[];
  work: { batchesPosted: number; receiptsCommitted: number; receiptsAudited: number };
  money: {
    channelsOpened: number;
    vouchersRedeemed: number;
    paidToServersWei: string;
    feesWei: string;
    rewardPoolWei: string;
    channels: ChannelView[];
    rewards: VerifierRewardView[];
  };
  disputes: DisputeView[];
  /** Present when the dashboard watches a gateway. */
  gateway?: GatewayView;
  /** Where transaction links point: `${txUrl}${hash}`. */
  txUrl: string;
  /** The last error reading the chain, if the last poll failed. */
  error?: string;
}

/** One point of the plots: trust and tokens/s of each server (by operator address) at `at`. */
export interface Sample {
  at: number;
  trust: Record<string, number>;
  tokensPerS: Record<string, number>;
}

/** Server-sent events of /dashboard/events: `history` once on connect, then `snapshot` and `sample` each tick. */
export type DashboardEvent = { type: "history"; samples: Sample[] } | { type: "snapshot"; snapshot: Snapshot } | { type: "sample"; sample: Sample };
