import type { KvCache, Shard } from "../../engine/runtime/shard.js";
import { SeededRandom } from "../../engine/random.js";
import { ort } from "../../engine/runtime/session.js";
import { ActivationStore } from "../../node/store/activationStore.js";
import { float32ToF16Bytes, toFloat32 } from "../../protocol/dtype.js";

/**
 * How a cheating server computes, from the step at session position `fromPosition` on (earlier
 * steps are honest), so a test knows which step must be caught:
 * - noise: adds uniform noise in [-amplitude, amplitude] to every output value;
 * - skip: computes nothing, returns the input as the output;
 * - fewerLayers: runs `lesser` (the first layers of the range only, e.g. 3 of 4) instead;
 * - otherWeights: runs `other` (the same layers of another variant) instead;
 * - lowerPrecision: rounds the input, the output and the new KV cache entries to fp16.
 */
export type Fault =
  | { kind: "noise"; amplitude: number; seed?: number }
  | { kind: "skip" }
  | { kind: "fewerLayers"; lesser: Shard }
  | { kind: "otherWeights"; other: Shard }
  | { kind: "lowerPrecision" };

/**
 * A wrapper with the Shard interface (what ShardServer runs): `forward` and `computeBatch`
 * misbehave as `fault` says from `fromPosition` on; everything else is the real shard's. Not a
 * production flag: only tests and the devnet's cheating server (scripts/devnet/cheatingServer.ts)
 * construct it, to show that the verifiers catch it.
 */
export function faultyShard(real: Shard, fault: Fault, fromPosition = 0): Shard {
  const faulty = Object.create(real) as Shard;
  const rng = new SeededRandom(fault.kind === "noise" ? (fault.seed ?? 1) : 1);
  const forwardOne = async (hidden: Float32Array, cache: KvCache): Promise<Float32Array> => {
    if (cache.length < fromPosition) return real.compute(hidden, cache);
    switch (fault.kind) {
      case "noise": {
        const out = await real.compute(hidden, cache);
        for (let i = 0; i < out.length; i++) out[i] = out[i]! + fault.amplitude * (2 * rng.uniform() - 1);
        return out;
      }
      case "skip":
        cache.length += hidden.length / real.config.hiddenSize; // the session moves on, no layer runs
        return hidden.slice();
      case "fewerLayers":
        return fault.lesser.compute(hidden, cache);
      case "otherWeights":
        return fault.other.compute(hidden, cache);
      case "lowerPrecision": {
        const out = roundF16(await real.compute(roundF16(hidden), cache));
        cache.keys = cache.keys.map(roundTensorF16);
        cache.values = cache.values.map(roundTensorF16);
        return out;
      }
    }
  };
  faulty.compute = forwardOne;
  faulty.computeBatch = async (hiddens, caches) => {
    if (caches.every((c) => c.length < fromPosition)) return real.computeBatch(hiddens, caches);
    const out: Float32Array[] = [];
    for (let i = 0; i < hiddens.length; i++) out.push(await forwardOne(hiddens[i]!, caches[i]!));
    return out;
  };
  return faulty;
}

function roundF16(values: Float32Array): Float32Array {
  return toFloat32(float32ToF16Bytes(values), "F16");
}

function roundTensorF16(t: ort.Tensor): ort.Tensor {
  return new ort.Tensor("float32", roundF16(t.data as Float32Array), t.dims);
}

/**
 * A test-only hook on a server's activation store: from step `fromStep` of every session on, the
 * stored steps are no longer produced when asked for (FetchStep by leaf, FetchSessionStep by
 * session and step), while the receipts stay listed in their batches. A server that withholds
 * what an audit asks for. Not a production flag: only tests and the devnet's cheating server call it.
 */
export function withholdSteps(store: ActivationStore, fromStep: bigint): void {
  const get = store.get.bind(store);
  const getBySession = store.getBySession.bind(store);
  // the listing reads each receipt through get: it keeps reading the unhooked one
  const listing = Object.assign(Object.create(store) as ActivationStore, { get });
  store.batchReceipts = (batchId, offset, limit) => ActivationStore.prototype.batchReceipts.call(listing, batchId, offset, limit);
  store.get = (leaf) => {
    const stored = get(leaf);
    return stored !== undefined && stored.receipt.step >= fromStep ? undefined : stored;
  };
  store.getBySession = (sessionId, step) => (step >= fromStep ? undefined : getBySession(sessionId, step));
}
