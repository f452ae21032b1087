import { Option, type Command } from "commander";
import type { ModelDirectory } from "../../engine/model/modelDir.js";
import { ACTIVATION_ENCODINGS, type ActivationEncoding } from "../../protocol/activations.js";
import type { OpenedLayers } from "../gateway/models.js";
import { LocalPipeline } from "../localPipeline.js";
import { RemotePipeline, type VerifiedReceipt } from "../remotePipeline.js";
import { DEFAULT_ROUTE_TIMING } from "../routeOptions.js";
import { integer, integerList } from "./options.js";

/** The flags that say where the layers run, shared by `efed generate`, `efed chat` and `efed gateway`. */
export interface PipelineFlags {
  split?: number[];
  route?: string[];
  wire: ActivationEncoding;
  forward: boolean;
  connectTimeoutMs: number;
  stepTimeoutMs: number;
  threads: number;
}

/** The layers of a command, and how to let them go. */
export interface OpenedPipeline extends OpenedLayers {
  /** Whether the layers run on a route of servers. */
  remote: boolean;
}

export function addPipelineFlags(command: Command): Command {
  const t = DEFAULT_ROUTE_TIMING;
  return command
    .addOption(new Option("--split <layers>", "run the layers in this process as shards split at these boundaries, e.g. 2,4").argParser(integerList(1)).conflicts("route"))
    .option("--route <urls>", "run the layers on these shard servers, in order (comma-separated ws:// URLs)", (v: string) => v.split(",").map((u) => u.trim()))
    .addOption(new Option("--wire <encoding>", "hidden-state encoding on the wire with --route").choices(ACTIVATION_ENCODINGS).default("fp32"))
    .option("--no-forward", "with --route: relay every server's output through this client instead of server to server")
    .option("--connect-timeout-ms <ms>", "with --route: time to reach each server", integer(1), t.connectTimeoutMs)
    .option("--step-timeout-ms <ms>", `with --route: time each server gets for its part of a step (plus ${t.stepTimeoutPerTokenMs} ms per token of the step)`, integer(1), t.stepTimeoutMs)
    .option("--threads <n>", "intra-op threads of the layers' ONNX Runtime sessions in this process (the head uses one)", integer(1, 256), 1);
}

/** The layers of `model` on the route of `flags` (`onReceipt` gets each verified receipt), or in this process without one. */
export async function openPipeline(model: ModelDirectory, flags: PipelineFlags, onReceipt?: (r: VerifiedReceipt) => void): Promise<OpenedPipeline> {
  if (flags.route === undefined) {
    const local = await LocalPipeline.load(model, flags.split ?? [], { threads: flags.threads });
    return { pipeline: local, servers: ["in-process"], remote: false, close: () => local.release() };
  }
  const remote = await RemotePipeline.connect(flags.route, model.config.numLayers, {
    encoding: flags.wire,
    forward: flags.forward,
    connectTimeoutMs: flags.connectTimeoutMs,
    stepTimeoutMs: flags.stepTimeoutMs,
    ...(onReceipt === undefined ? {} : { onReceipt }),
  });
  return { pipeline: remote, servers: remote.connections.map((c) => c.url), remote: true, close: async () => remote.close() };
}
