import { Wallet } from "ethers";
import type { ModelDirectory } from "../../../engine/model/modelDir.js";
import type { Head } from "../../../engine/runtime/head.js";
import { Shard } from "../../../engine/runtime/shard.js";
import type { ActivationEncoding } from "../../../protocol/activations.js";
import { generate, type LayerPipeline } from "../../../client/generate.js";
import { RemotePipeline } from "../../../client/remotePipeline.js";
import { ShardConnection } from "../../../client/shardClient.js";
import { auditSession, type AuditReport, type SessionPrefix } from "../../../node/verifier/audit.js";
import { toleranceFor } from "../../../node/verifier/compareOutput.js";
import { fetchSessionPrefix } from "../../../node/verifier/fetchPrefix.js";
import { startServer, type RunningServer } from "../support.js";

/** The test's registered verifier: every server started here accepts it. */
export const verifier = Wallet.createRandom();
export const VARIANT = "0x" + "ab".repeat(32);

/** Starts a server for layers [first, last) that accepts `verifier`; `wrap` makes it cheat. */
export function serveLayers(
  model: ModelDirectory,
  first: number,
  last: number,
  dir: string,
  options: { variantId?: string; wrap?: (s: Shard) => Shard } = {},
): Promise<RunningServer> {
  const isVerifier = (address: string): Promise<boolean> => Promise.resolve(address === verifier.address);
  return startServer(model, first, last, dir, {}, options.variantId ?? VARIANT, undefined, {}, { isVerifier }, options.wrap);
}

export interface Generation {
  /** Per sequence generated, the session ids along the route (route order). */
  sessionIds: string[][];
  /** Steps each sequence took. */
  steps: number;
}

/** `count` concurrent greedy generations of `maxTokens` tokens from `prompt` over the servers' route. */
export async function generateOn(
  head: Head,
  servers: readonly RunningServer[],
  prompt: readonly number[],
  options: { maxTokens: number; encoding?: ActivationEncoding; forward?: boolean; count?: number },
): Promise<Generation> {
  const pipeline = await RemotePipeline.connect(
    servers.map((s) => s.server.url),
    head.config.numLayers,
    { maxLength: 240, encoding: options.encoding ?? "fp32", forward: options.forward ?? true },
  );
  const sessionIds: string[][] = [];
  const recording: LayerPipeline = {
    openSequence: async () => {
      const sequence = await pipeline.openSequence();
      sessionIds.push([...sequence.sessionIds]);
      return sequence;
    },
  };
  try {
    const runs = Array.from({ length: options.count ?? 1 }, () => generate(head, recording, prompt, { maxTokens: options.maxTokens, temperature: 0 }));
    await Promise.all(runs);
  } finally {
    pipeline.close();
  }
  return { sessionIds, steps: options.maxTokens };
}

/** Verifier replay shards, one per (model directory, layer range), loaded once. */
export class Replayers {
  private readonly shards = new Map<string, Shard>();
  async get(model: ModelDirectory, first: number, last: number): Promise<Shard> {
    const key = `${model.dir}:${first}:${last}`;
    let shard = this.shards.get(key);
    if (shard === undefined) {
      shard = await Shard.load(model, first, last);
      this.shards.set(key, shard);
    }
    return shard;
  }
  async release(): Promise<void> {
    for (const s of this.shards.values()) await s.release();
    this.shards.clear();
  }
}

/** Fetches steps 0..lastStep of `sessionId` from `s` as the authenticated verifier. */
export async function fetchFrom(s: RunningServer, sessionId: string, lastStep: bigint): Promise<SessionPrefix> {
  const connection = await ShardConnection.connect(s.server.url, { requestTimeoutMs: 10_000 });
  try {
    await connection.authenticate(verifier.signingKey, verifier.address);
    return await fetchSessionPrefix(connection, sessionId, lastStep);
  } finally {
    connection.close();
  }
}

/** Audits what server `s` (layers [first, last) of `model`, registered as `variantId`) stored for a session, at the variant's tolerance. */
export async function auditAt(
  replayers: Replayers,
  model: ModelDirectory,
  s: RunningServer,
  first: number,
  last: number,
  prefix: SessionPrefix,
  variantId = VARIANT,
): Promise<AuditReport> {
  const shard = await replayers.get(model, first, last);
  const server = { server: s.wallet.address, variantId, firstLayer: first, lastLayer: last };
  return auditSession({ shard, variantId }, server, prefix, { tolerance: toleranceFor(model.compression) });
}
