import type { ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Wallet } from "ethers";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { tinyConfig, writeRandomModel } from "../../engine/model/randomModel.js";
import { Head } from "../../engine/runtime/head.js";
import { generate } from "../../client/generate.js";
import { LocalPipeline } from "../../client/localPipeline.js";
import { scratchDir } from "../engine/helpers.js";
import { runEfed, spawnEfedServer } from "../support/efedProcess.js";
import { freePort } from "../support/hardhatNode.js";
import { faultRelay, type FaultHooks, type FaultRelay } from "./support/faultRelay.js";

const scratch = scratchDir();
const modelDir = join(scratch.dir, "tiny");
const PROMPT = [1, 5, 9];
const TOKENS = 16;
let expected: number[];

beforeAll(async () => {
  writeRandomModel(modelDir, tinyConfig({ eos_token_id: 96 }), { seed: 9, dtype: "F16", std: 0.15 });
  const model = ModelDirectory.open(modelDir);
  expected = (await generate(await Head.load(model), await LocalPipeline.load(model), PROMPT, { maxTokens: TOKENS, temperature: 0, stopTokens: [96] }))
    .generatedIds;
  model.close();
});
afterAll(() => scratch.cleanup());

const children: ChildProcess[] = [];
const relays: FaultRelay[] = [];
afterEach(async () => {
  for (const r of relays.splice(0)) await r.close();
  // a stopped server is resumed before it is killed, so that nothing is left behind
  for (const child of children.splice(0)) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGCONT");
    child.kill("SIGKILL");
    await exited;
  }
});

/** `efed server` processes for layers 0:2 and 2:4, each with its own key and store. */
async function startServers(): Promise<{ url: string; child: ChildProcess }[]> {
  const started: { url: string; child: ChildProcess }[] = [];
  for (const layers of ["0:2", "2:4"]) {
    const key = join(scratch.dir, `key-${layers.replace(":", "-")}-${children.length}`);
    writeFileSync(key, Wallet.createRandom().privateKey);
    const store = join(scratch.dir, `store-${layers.replace(":", "-")}-${children.length}.sqlite`);
    const args = ["--model", modelDir, "--layers", layers, "--port", "0", "--key", key, "--store", store, "--forward-private"]; // the next hop is on loopback
    const { url } = await spawnEfedServer(args, children);
    started.push({ url, child: children[children.length - 1]! });
  }
  return started;
}

async function relayTo(url: string, hooks: FaultHooks): Promise<FaultRelay> {
  const relay = await faultRelay(url, hooks);
  relays.push(relay);
  return relay;
}

const generateArgs = ["generate", "--model", modelDir, "--ids", PROMPT.join(","), "--max-tokens", String(TOKENS)];

interface JsonOutput {
  promptIds: number[];
  generatedIds: number[];
  finish: string;
  error?: { code: string; message: string };
}

describe("efed generate --route against servers that fail", () => {
  it("an unreachable server fails the route at connect, naming it, with nothing generated", async () => {
    const [first] = await startServers();
    const closed = `ws://127.0.0.1:${await freePort()}`;
    const r = await runEfed(...generateArgs, "--route", `${first!.url},${closed}`, "--json");
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as JsonOutput;
    expect(out).toMatchObject({ promptIds: PROMPT, generatedIds: [], finish: "error", error: { code: "CONNECT_FAILED" } });
    expect(out.error!.message).toContain(`server 2 of 2 on the route (${closed}) cannot be reached`);
    expect(r.stderr).toContain(`efed: server 2 of 2 on the route (${closed}) cannot be reached`);
  });

  it("a server killed (SIGKILL) mid-generation: the tokens so far are printed as JSON, the error names the server", async () => {
    const KILL_AT = 5;
    const [first, second] = await startServers();
    const relay = await relayTo(second!.url, { onStep: (m) => m.step === BigInt(KILL_AT) && second!.child.kill("SIGKILL") });
    const r = await runEfed(...generateArgs, "--route", `${first!.url},${relay.url}`, "--json");
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as JsonOutput;
    expect(out).toMatchObject({ promptIds: PROMPT, generatedIds: expected.slice(0, KILL_AT), finish: "error" });
    expect(out.error!.message).toMatch(new RegExp(`^server 2 of 2 on the route \\(${relay.url}\\) failed step ${KILL_AT}: `));
    expect(r.stderr).toContain(`efed: server 2 of 2 on the route (${relay.url}) failed step ${KILL_AT}`);
  });

  it("a server paused (SIGSTOP) mid-generation, relayed: the tokens so far are printed, the step deadline names the server", async () => {
    const STOP_AT = 4;
    const [first, second] = await startServers();
    const relay = await relayTo(second!.url, { onStep: (m) => m.step === BigInt(STOP_AT) && second!.child.kill("SIGSTOP") });
    const r = await runEfed(...generateArgs, "--route", `${first!.url},${relay.url}`, "--no-forward", "--step-timeout-ms", "1000");
    expect(r.code).toBe(1);
    expect(r.stdout).toBe(`${expected.slice(0, STOP_AT).join(",")}\n`); // ids: the random model has no tokenizer
    expect(r.stderr).toContain(`efed: server 2 of 2 on the route (${relay.url}) did not deliver the output of step ${STOP_AT} within `);
  });
});
