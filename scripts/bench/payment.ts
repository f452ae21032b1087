/**
 * npm run bench:payment [-- --write] — what paying per step costs a generation, measured end to end
 * as a user runs it: a Hardhat node with the protocol deployed, the shipped model split over two
 * priced `efed server` processes (0.001 EFED per token, registered and staked with `efed operator`),
 * and the same split over two free servers. The client (this process, 1 thread) decodes through
 * each route with nothing to pay, with a payment channel per server (`--pay channels`: a durable
 * voucher per server and step) and with probabilistic tickets (`--pay tickets`, default face
 * value), relayed and forwarded; configurations alternate in rounds, and each run's mean step (a
 * payment every few steps is part of it) is compared by the median over the runs. The
 * priced servers run twice: with the default credit (paid after every step) and with
 * `--credit-steps 8` (paid once every 8 steps), each against the free servers in its own rounds.
 *
 * With --write, replaces the "Paying per step" section of docs/benchmarks.md. The chain and every
 * server are stopped at the end, also on error.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import type { LayerPipeline } from "../../client/generate.js";
import { paymentFor, type GenerationPayment, type PayMethod } from "../../client/payment/generatePayment.js";
import { RemotePipeline } from "../../client/remotePipeline.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { Head } from "../../engine/runtime/head.js";
import { stopProcess } from "../../test/support/efedProcess.js";
import { startHardhatNode, type LocalChain } from "../../test/support/hardhatNode.js";
import { SERVERS, SHIPPED_MODEL, runPricedServers, startPricedServers, succeeded, type PricedServers } from "../../test/support/pricedServers.js";
import { writeDocSections } from "./lib/docs.js";
import { markdownTable } from "./lib/markdown.js";
import { startServer, stopServers, type RunningServer } from "./lib/networkServers.js";
import { mean, median } from "./lib/stats.js";
import { decodeRun } from "./network/decode.js";

const ROUNDS = 4;
const STEPS = 64;
const PROMPTS = [
  [1, 15, 27, 3, 99, 42, 7, 61],
  [5, 8, 13, 21, 34, 55, 89, 144],
];
const MAX_LENGTH = 256;
/** The priced servers' `--credit-steps`: the default, then a credit the client pays once every 8 steps. */
const CREDITS = [1, 8] as const;

interface Config {
  name: string;
  pay: PayMethod | "free";
  forward: boolean;
  pipeline: LayerPipeline;
}

/** What measure() runs against: the client's head, the free servers, the priced ones and the wallet paying them. */
interface MeasureContext {
  head: Head;
  layers: number;
  freeUrls: readonly string[];
  priced: PricedServers;
  walletFile: string;
  rpc: string;
  /** Everything measure() opens, for the caller to close. */
  pipelines: RemotePipeline[];
  payments: GenerationPayment[];
}

/** Free, channels and tickets, relayed and forwarded, against priced servers running with `credit`: the table's rows. */
async function measure(x: MeasureContext, credit: number): Promise<string[][]> {
  const { head, layers: L, freeUrls, priced, walletFile, rpc, pipelines, payments } = x;
  const configs: Config[] = [];
  for (const forward of [false, true]) {
    const connect = async (urls: readonly string[], options: Partial<Parameters<typeof RemotePipeline.connect>[2]> = {}): Promise<RemotePipeline> => {
      const p = await RemotePipeline.connect(urls, L, { encoding: "fp32", maxLength: MAX_LENGTH, forward, ...options });
      pipelines.push(p);
      return p;
    };
    configs.push({ name: "free", pay: "free", forward, pipeline: await connect(freeUrls) });
    for (const pay of ["channels", "tickets"] as const) {
      const payment = (await paymentFor({ wallet: walletFile, rpc, deployment: priced.deployment, pay, channelTokens: 100_000 }))!;
      payments.push(payment);
      configs.push({ name: pay, pay, forward, pipeline: await connect(priced.urls, payment.pipelineOptions) });
    }
  }
  const label = (c: Config): string => `${c.name}, ${c.forward ? "forwarded" : "relayed"}`;
  for (const c of configs) await decodeRun(head, c.pipeline, PROMPTS[0]!, 4); // warm-up: channels opened, sessions bound, links up
  // per configuration, each run's mean step: a payment every few steps is a cost a median of steps would hide
  const steps = new Map<Config, number[]>(configs.map((c) => [c, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < configs.length; i++) {
      const c = configs[(i + r) % configs.length]!;
      steps.get(c)!.push(mean((await decodeRun(head, c.pipeline, PROMPTS[r % PROMPTS.length]!, STEPS)).stepMs));
    }
    console.error(`credit ${credit}, round ${r + 1}/${ROUNDS}: ` + configs.map((c) => `${label(c)} ${median(steps.get(c)!).toFixed(2)} ms`).join(", "));
  }
  return configs.map((c) => {
    const ms = median(steps.get(c)!);
    const base = median(steps.get(configs.find((b) => b.pay === "free" && b.forward === c.forward)!)!);
    const added = c.pay === "free" ? "—" : (ms - base).toFixed(2);
    const perServer = c.pay === "free" ? "—" : `**${((ms - base) / SERVERS.length).toFixed(2)}**`;
    const paidWith = c.pay === "free" ? "nothing (free servers)" : `${c.pay}, every ${credit === 1 ? "step" : `${credit} steps`}`;
    return [c.forward ? "forwarded" : "relayed", paidWith, ms.toFixed(2), (1000 / ms).toFixed(1), `${((base / ms) * 100).toFixed(0)}%`, added, perServer, String(steps.get(c)!.length * STEPS)];
  });
}

async function main(): Promise<void> {
  const load0 = loadavg();
  const t0 = performance.now();
  const dir = mkdtempSync(join(tmpdir(), "efed-bench-payment-"));
  const children: ChildProcess[] = [];
  const payments: GenerationPayment[] = [];
  const pipelines: RemotePipeline[] = [];
  let free: RunningServer[] = [];
  let chain: LocalChain | undefined;
  try {
    console.error("starting a Hardhat node, deploying, registering two priced servers …");
    chain = await startHardhatNode();
    const priced = await startPricedServers(chain, dir);
    const walletFile = join(dir, "wallet.json");
    free = await Promise.all(SERVERS.map(({ layers }) => startServer(process.cwd(), SHIPPED_MODEL, Number(layers.split(":")[0]), Number(layers.split(":")[1]), dir)));
    const model = ModelDirectory.open(SHIPPED_MODEL);
    const head = await Head.load(model, { threads: 1 });
    const rows: string[][] = [];
    for (const credit of CREDITS) {
      await runPricedServers(priced, children, walletFile, ["--credit-steps", String(credit)]);
      if (credit === CREDITS[0]) {
        process.env.EFED_WALLET_PASSWORD = "pw"; // the imported wallet's password (startPricedServers)
        succeeded("efed wallet fund", await priced.efed("wallet", "fund", "--wallet", walletFile, ...priced.onChain(), "--amount", "50", "--reserve", "5"));
      }
      const context = { head, layers: model.config.numLayers, freeUrls: free.map((f) => f.url), priced, walletFile, rpc: chain.url, pipelines, payments };
      rows.push(...(await measure(context, credit)));
      // the next credit's servers take these ones' ports
      for (const p of pipelines.splice(0)) p.close();
      for (const p of payments.splice(0)) p.close();
      await Promise.all(children.splice(0).map((c) => stopProcess(c)));
    }
    const table = markdownTable(
      ["route (2 servers)", "paid with", "mean step ms (median of runs)", "decode tok/s", "% of free", "added ms per step", "added ms per priced server", "steps timed"],
      rows,
      ["left", "left", "right", "right", "right", "right", "right", "right"],
    );
    const load1 = loadavg();
    const body = [
      `Machine: ${load0.map((l) => l.toFixed(1)).join(" / ")} load (1/5/15 min) at the start, ${load1.map((l) => l.toFixed(1)).join(" / ")} at the end; the run took ${((performance.now() - t0) / 60_000).toFixed(1)} min.`,
      "The shipped model (kjv-llama-6m) split 0:4 / 4:8 over two `efed server` processes priced at 0.001 EFED per token on a",
      "Hardhat node (registered and staked with `efed operator`), and over two free ones (no chain). The client is this",
      "process (1 thread), paying from a wallet as `efed generate --wallet` does: `channels` signs a voucher per priced server",
      "and payment (a payment's vouchers stored in one durable ledger transaction, then sent); `tickets`",
      "signs a ticket per priced server and payment (default face value 1 EFED, so most tickets do not win; nonces reserved",
      "durably in blocks). The client pays a server as often as its credit requires (`efed server --credit-steps`, announced in",
      "its ServerInfo): after every step at the default credit of 1, once every 8 steps at 8 (and what is left when the",
      `sequence closes). ${STEPS} greedy decode steps after an 8-token prompt per run, configurations alternating over ${ROUNDS} rounds`,
      "(the priced servers restarted with the other credit between the two halves, each half against the free servers); each",
      "run's mean step time (the step that pays is one of every 8 at credit 8), the median over the runs.",
      "",
      table,
      "",
      "The acknowledgements come while the client samples the next token; the next step waits for all of them (a server",
      "admits a session's step only while fewer than `--credit-steps` of its steps are unpaid).",
    ].join("\n");
    console.log(`\n${body}\n`);
    writeDocSections(join(process.cwd(), "docs", "benchmarks.md"), "Benchmarks", { "Paying per step (npm run bench:payment)": body });
  } finally {
    for (const p of pipelines) p.close();
    for (const p of payments) p.close();
    await stopServers(free);
    await Promise.all(children.map((c) => stopProcess(c)));
    await chain?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
