/** What bench:network measures and reports: plans, constants and result rows shared by its modules. */
import type { ActivationEncoding } from "../../../protocol/activations.js";

/** Route sizes measured (servers). */
export const ROUTE_SIZES = [1, 2, 4] as const;
/** Route sizes also measured with forwarding (one server has nothing to forward to). */
export const FORWARD_SIZES = [2, 4] as const;
export const CONCURRENCY = [1, 4, 8] as const;
/** Decode steps whose frames are counted per encoding. */
export const BYTE_STEPS = 16;
/** Greedy tokens per prompt in the agreement test (teacher-forced). */
export const AGREEMENT_TOKENS = 64;
/** Tokens a session may hold on the servers (the route asks for no more). */
export const SESSION_TOKENS = 256;
/** One-way delay of every simulated wide-area link, ms. */
export const WAN_DELAY_MS = 5;
/** Timed decode steps per configuration over the simulated wide-area links. */
export const WAN_STEPS = 24;

/** The parts of the benchmark, each selectable with --parts. */
export const PARTS = ["hop", "cpu", "bytes", "agreement", "concurrency", "wan"] as const;
export type Part = (typeof PARTS)[number];

export interface Plan {
  label: string;
  dir: string;
  /** Timed decode steps per configuration and round. */
  decodeTokens: number;
  /** Rounds of (baseline, route 1, route 2, route 4), in rotating order. */
  rounds: number;
  /** Tokens each session generates in the concurrency test. */
  concurrentTokens: number;
  /** Repetitions of each concurrency level (median taken). */
  concurrentReps: number;
  prompts: number[][];
  agreement: boolean;
}

export interface SpeedRow {
  name: string;
  hops: number;
  /** How hidden states travel between servers: relayed by the client, or forwarded server to server. */
  mode: "local" | "relay" | "forward";
  medianStepMs: number;
  medianForwardMs: number;
  /** Median per step of the relayed hops' send → result times, summed over the hops (0 otherwise). */
  medianRoundTripMs: number;
  /** Median per hop of the relayed steps' result → receipt times (0 otherwise). */
  medianReceiptLagMs: number;
  steps: number;
  /** The median step of each interleaved round, in round order (what the spread between rounds is read from). */
  roundStepMs: number[];
}

export interface BytesRow {
  encoding: ActivationEncoding;
  stepFrame: number;
  resultFrame: number;
  receiptFrame: number;
  wsHeaders: number;
  tcpPerTokenPerHop: number;
  payload: number;
}

export interface ConcurrencyRow {
  sessions: number;
  tokensPerSecond: number;
  wallSeconds: number;
}

export interface WanRow {
  hops: number;
  relayedMs: number;
  forwardedMs: number;
}

export interface AgreementRow {
  encoding: ActivationEncoding;
  positions: number;
  matches: number;
}

/** CPU per hop outside the layers, µs (see hopCpu.ts). */
/** Median µs per decode step and hop; sign, recover and store are a run's cost ÷ its `signEvery` steps. */
export interface HopCpu {
  frames: number;
  hashes: number;
  /** Receipt leaf and chain step, server and client. */
  leaves: number;
  sign: number;
  recover: number;
  store: number;
  signEvery: number;
}

export interface ModelResult {
  plan: Plan;
  hiddenSize: number;
  layers: number;
  splits: Record<number, [number, number][]>;
  speed: SpeedRow[];
  /** Median loopback WebSocket round trip to a bare echo process, measured between the speed rounds. */
  echoMs: number;
  bytes: BytesRow[];
  concurrency: ConcurrencyRow[];
  agreement: AgreementRow[];
  /** Median decode step over simulated wide-area links (shipped model only). */
  wan: WanRow[];
  /** Whether the fp32 route produced exactly the single-process greedy tokens. */
  fp32RouteExact: boolean;
  startSeconds: number;
}
