/** Timed decoding through a layer pipeline, as a client sees it, and teacher-forced agreement. */
import type { LayerPipeline, LayerSequence } from "../../../client/generate.js";
import { RemotePipeline } from "../../../client/remotePipeline.js";
import { argmax } from "../../../client/sampler.js";
import type { StepTiming } from "../../../client/shardClient.js";
import type { Head } from "../../../engine/runtime/head.js";
import type { ActivationEncoding } from "../../../protocol/activations.js";
import type { RunningServer } from "../lib/networkServers.js";
import { SESSION_TOKENS } from "./types.js";

/**
 * The StepTiming reports of every relayed step of the routes connected with `connect`, by
 * "session:step" (ShardConnection's onStepTiming hook: a report comes once the step's result and
 * receipt are both in, so a step's come in by the time its sequence is closed).
 */
const timings = new Map<string, StepTiming>();

/** A route over `servers`, reporting its relayed steps' timings. */
export function connect(servers: readonly RunningServer[], layers: number, encoding: ActivationEncoding, forward: boolean): Promise<RemotePipeline> {
  return RemotePipeline.connect(
    servers.map((s) => s.url),
    layers,
    { encoding, maxLength: SESSION_TOKENS, forward, onStepTiming: (t) => timings.set(`${t.sessionId}:${t.step}`, t) },
  );
}

export interface DecodeRun {
  stepMs: number[];
  /** Part of each step spent in the layers (sequence.compute): local compute, or the whole route. */
  forwardMs: number[];
  /** Per step: the relayed hops' send → result times, summed (empty unless relayed). */
  roundTripMs: number[];
  /** Per hop and step: result → receipt (empty unless relayed). */
  receiptLagMs: number[];
  /** Greedy tokens: the one predicted after the prompt, then one per timed step. */
  tokens: number[];
}

/** Prefills `prompt`, then decodes `steps` greedy tokens, timing each step as a client sees it (embed → layers → LM head → argmax). */
export async function decodeRun(head: Head, pipeline: LayerPipeline, prompt: readonly number[], steps: number): Promise<DecodeRun> {
  const H = head.config.hiddenSize;
  const sequence: LayerSequence & { sessionIds?: readonly string[] } = await pipeline.openSequence();
  const stepMs: number[] = [];
  const forwardMs: number[] = [];
  const tokens: number[] = [];
  try {
    const prefill = await sequence.compute(head.embed(prompt));
    let next = argmax(await head.logits(prefill.subarray(prefill.length - H)));
    tokens.push(next);
    for (let s = 0; s < steps; s++) {
      const t0 = performance.now();
      const embedded = head.embed([next]);
      const t1 = performance.now();
      const hidden = await sequence.compute(embedded);
      forwardMs.push(performance.now() - t1);
      next = argmax(await head.logits(hidden));
      stepMs.push(performance.now() - t0);
      tokens.push(next);
    }
  } finally {
    await sequence.close(); // waits for the last receipts: every relayed step has reported
  }
  const roundTripMs: number[] = [];
  const receiptLagMs: number[] = [];
  const ids = sequence.sessionIds ?? [];
  for (let s = 1; s <= steps; s++) {
    const reports = ids.map((id) => timings.get(`${id}:${s}`)).filter((t) => t !== undefined);
    if (reports.length === 0) continue; // local, or forwarded
    if (reports.length !== ids.length) throw new Error(`step ${s}: ${reports.length} of ${ids.length} hops reported their timing`);
    roundTripMs.push(reports.reduce((a, t) => a + t.sendToResultMs, 0));
    receiptLagMs.push(...reports.map((t) => t.resultToReceiptMs));
  }
  for (const id of ids) for (let s = 0; s <= steps; s++) timings.delete(`${id}:${s}`);
  return { stepMs, forwardMs, roundTripMs, receiptLagMs, tokens };
}

/** Teacher-forced greedy agreement: feeds the reference prefix at every position and counts argmax matches. */
export async function teacherForced(head: Head, pipeline: LayerPipeline, prompt: readonly number[], reference: readonly number[]): Promise<number> {
  const H = head.config.hiddenSize;
  const sequence = await pipeline.openSequence();
  let matches = 0;
  try {
    let hidden = await sequence.compute(head.embed(prompt));
    for (let i = 0; i < reference.length; i++) {
      if (i > 0) hidden = await sequence.compute(head.embed([reference[i - 1]!]));
      if (argmax(await head.logits(hidden.subarray(hidden.length - H))) === reference[i]) matches++;
    }
    return matches;
  } finally {
    await sequence.close();
  }
}
