import { basename, resolve } from "node:path";
import { Command } from "commander";
import { formatEther } from "ethers";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { TextTokenizer } from "../../engine/model/tokenizer.js";
import { Head } from "../../engine/runtime/head.js";
import { BatchingHead } from "../batchingHead.js";
import { ChatTemplate } from "../chat/template.js";
import { GatewayModel } from "../gateway/models.js";
import { GatewayCounters } from "../dashboard/gatewayCounters.js";
import type { GatewayAccounting } from "../gateway/server.js";
import { integer } from "./options.js";
import { addPipelineFlags, openPipeline, type OpenedPipeline, type PipelineFlags } from "./pipelineFlags.js";

/** Response header of a paid answer: what its sessions cost, in tokens. */
const COST_HEADER = "x-efed-cost";

interface GatewayFlags extends PipelineFlags {
  model: string;
  modelName?: string;
  port: number;
  host: string;
  maxActiveSequences: number;
  maxStepsInFlight: number;
  retryAfterS: number;
  dashboard?: boolean;
}

/**
 * `efed gateway`: the OpenAI-compatible HTTP API for one model, its layers in this process or on a
 * route of shard servers. Runs until SIGINT/SIGTERM; prints `{"event":"listening","url":…}` once ready.
 */
export function gatewayCommand(): Command {
  const command = new Command("gateway")
    .description("serve an OpenAI-compatible HTTP API (/v1/models, /v1/chat/completions, /v1/completions) for a model")
    .requiredOption("--model <dir>", "Hugging Face model directory (config.json, safetensors, tokenizer.json)")
    .option("--model-name <id>", "the model id clients ask for (default: the directory's name)")
    .requiredOption("--port <port>", "TCP port to listen on (0: any free port)", integer(0, 65535))
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--max-active-sequences <n>", "sequences (choices of all requests) running at once; more get 429", integer(1, 4096), 64)
    .option("--max-steps-in-flight <n>", "steps of all requests sent to the layers at once; more wait (at most half the servers' --max-steps-in-flight-per-address)", integer(1, 4096), 8)
    .option("--retry-after-s <s>", "seconds between tries to open a route after a failure (told to clients as Retry-After)", integer(1, 3600), 5)
    .option("--dashboard", "also serve the live dashboard of the network at /dashboard/ (needs --rpc; reads --deployment)");
  return addPipelineFlags(command).action(async (flags: GatewayFlags) => {
    if (flags.dashboard === true && flags.rpc === undefined) throw new InvalidArgumentError("--dashboard needs --rpc: the dashboard shows the chain's servers, stakes and disputes");
    // the dashboard counts the work of the route from the receipts its servers sign
    const counters = flags.dashboard === true ? new GatewayCounters() : undefined;
    const model = ModelDirectory.open(flags.model);
    const head = await Head.load(model, { threads: 1 });
    let opened: OpenedPipeline | undefined; // the route now in use (opened again after a failure)
    const served = new GatewayModel({
      id: flags.modelName ?? basename(resolve(flags.model)),
      head: new BatchingHead(head),
      tokenizer: TextTokenizer.load(flags.model),
      template: ChatTemplate.forModel(flags.model),
      eosTokenIds: model.config.eosTokenIds,
      openLayers: async () => (opened = await openPipeline(model, flags, counters?.record)),
      retryAfterS: flags.retryAfterS,
      maxStepsInFlight: flags.maxStepsInFlight,
    });
    // loaded here, not with the CLI: fastify takes about a second to import, which every other command would pay
    const { buildGateway } = await import("../gateway/server.js");
    const app = buildGateway({ models: [served], maxActiveSequences: flags.maxActiveSequences, accounting: walletAccounting(() => opened) });
    try {
      if (counters !== undefined) {
        const { attachDashboard } = await import("../dashboard/open.js");
        await attachDashboard(app, { rpcUrl: flags.rpc!, ...(flags.deployment === undefined ? {} : { deploymentFile: flags.deployment }), counters });
      }
      const url = await app.listen({ port: flags.port, host: flags.host });
      const dashboard = counters === undefined ? {} : { dashboard: `${url}/dashboard/` };
      console.log(JSON.stringify({ event: "listening", url, model: served.id, ...dashboard, covered: await served.covered() }));
      await new Promise<void>((done) => {
        process.once("SIGINT", done);
        process.once("SIGTERM", done);
      });
    } finally {
      await app.close();
      await served.close();
      await head.release();
      model.close();
    }
  });
}

/** With --wallet: each answer says what it cost (`x-efed-cost`, from the vouchers signed for its sessions). */
function walletAccounting(current: () => OpenedPipeline | undefined): GatewayAccounting {
  return {
    admit: () => undefined, // the wallet's limits are checked before each step: reaching one ends the request (server.ts spendingLimit)
    costHeaders: (sessionIds) => {
      const costOf = current()?.costOf;
      return costOf === undefined ? {} : { [COST_HEADER]: `${formatEther(costOf(sessionIds))} EFED` };
    },
  };
}
