import { Option, type Command } from "commander";
import type { ModelDirectory } from "../../engine/model/modelDir.js";
import { ACTIVATION_ENCODINGS, type ActivationEncoding } from "../../protocol/activations.js";
import type { OpenedLayers } from "../gateway/models.js";
import { LocalPipeline } from "../localPipeline.js";
import { addPaymentOptions, paymentFor, type PaymentFlags } from "../payment/generatePayment.js";
import type { VerifiedReceipt } from "../remotePipeline.js";
import { openRoute } from "../route/openRoute.js";
import { DEFAULT_ROUTE_TIMING } from "../routeOptions.js";
import { integer, integerList, routeOptions, type RouteFlags } from "./options.js";

/**
 * The flags that say where the layers run and who pays for them, shared by `efed generate`,
 * `efed chat` and `efed gateway`: in this process (optionally split), on an explicit `--route`, or on
 * a route found on chain (`--rpc`), paid from `--wallet`.
 */
export interface PipelineFlags extends RouteFlags, PaymentFlags {
  split?: number[];
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
  /** What the work cost so far ("cost: 0.016 EFED" and a line per server), when a wallet pays it. */
  costReport?: () => string;
  /** What the work of `sessionIds` cost (token base units), when a wallet pays it. */
  costOf?: (sessionIds: readonly string[]) => bigint;
}

export function addPipelineFlags(command: Command): Command {
  const t = DEFAULT_ROUTE_TIMING;
  command.addOption(
    new Option("--split <layers>", "run the layers in this process as shards split at these boundaries, e.g. 2,4").argParser(integerList(1)).conflicts(["route", "rpc"]),
  );
  for (const option of routeOptions()) command.addOption(option);
  command
    .addOption(new Option("--wire <encoding>", "hidden-state encoding on the wire with --route").choices(ACTIVATION_ENCODINGS).default("fp32"))
    .option("--no-forward", "with --route: relay every server's output through this client instead of server to server")
    .option("--connect-timeout-ms <ms>", "with --route: time to reach each server", integer(1), t.connectTimeoutMs)
    .option("--step-timeout-ms <ms>", `with --route: time each server gets for its part of a step (plus ${t.stepTimeoutPerTokenMs} ms per token of the step)`, integer(1), t.stepTimeoutMs)
    .option("--threads <n>", "intra-op threads of the layers' ONNX Runtime sessions in this process (the head uses one)", integer(1, 256), 1);
  return addPaymentOptions(command);
}

/**
 * The layers of `model` where `flags` say (`onReceipt` gets each verified receipt): in this process
 * without --route or --rpc; otherwise on a route (found on chain with --rpc alone) that fails over
 * to spares, paid per token when --wallet is given. The wallet opens first, so a wrong password fails
 * before anything connects.
 */
export async function openPipeline(model: ModelDirectory, flags: PipelineFlags, onReceipt?: (r: VerifiedReceipt) => void): Promise<OpenedPipeline> {
  if (flags.route === undefined && flags.rpc === undefined) {
    await paymentFor(flags); // refuses --wallet without --rpc
    const local = await LocalPipeline.load(model, flags.split ?? [], { threads: flags.threads });
    return { pipeline: local, servers: ["in-process"], remote: false, close: () => local.release() };
  }
  const paying = await paymentFor(flags);
  try {
    const record = paying?.pipelineOptions.onReceipt;
    const route = await openRoute(flags, model, model.dir, {
      encoding: flags.wire,
      forward: flags.forward,
      connectTimeoutMs: flags.connectTimeoutMs,
      stepTimeoutMs: flags.stepTimeoutMs,
      ...(paying === undefined ? {} : { payment: paying.pipelineOptions.payment }),
      onReceipt: (r) => {
        record?.(r);
        onReceipt?.(r);
      },
    });
    return {
      pipeline: route,
      servers: route.route,
      remote: true,
      close: async () => {
        route.close();
        paying?.close();
      },
      ...(paying === undefined ? {} : { costReport: () => paying.report(), costOf: (ids: readonly string[]) => paying.costOf(ids) }),
    };
  } catch (err) {
    paying?.close();
    throw err;
  }
}
