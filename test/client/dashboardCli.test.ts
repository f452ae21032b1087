import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { JsonRpcProvider, NonceManager } from "ethers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Snapshot } from "../../client/dashboard/snapshot.js";
import { DEVNET_PARAMS, deployProtocol, protocolAddresses } from "../../scripts/lib/deployProtocol.js";
import { scratchDir } from "../engine/helpers.js";
import { EFED_BIN, runEfed, stopProcess } from "../support/efedProcess.js";
import { startHardhatNode, type LocalChain } from "../support/hardhatNode.js";
import { KJV } from "./support/shippedModel.js";

/** `efed dashboard` as a user runs it, and the flag checks of `efed gateway --dashboard`. */
const scratch = scratchDir();
const children: ChildProcess[] = [];
let chain: LocalChain;
let deploymentFile: string;
const VARIANT = "0x" + "5a".repeat(32);

beforeAll(async () => {
  chain = await startHardhatNode();
  const provider = new JsonRpcProvider(chain.url, undefined, { staticNetwork: true });
  const protocol = await deployProtocol(new NonceManager(await provider.getSigner(0)), DEVNET_PARAMS);
  await (await protocol.registry.registerVariant(VARIANT, 12, "file://cli-model")).wait();
  deploymentFile = join(scratch.dir, "deployment.json");
  writeFileSync(deploymentFile, JSON.stringify({ chainId: "31337", contracts: await protocolAddresses(protocol) }));
  provider.destroy();
}, 120_000);
afterAll(async () => {
  await Promise.all(children.map((c) => stopProcess(c)));
  await chain?.stop();
  scratch.cleanup();
});

describe("efed dashboard", () => {
  it("serves the chain's state until SIGTERM, then exits 0", async () => {
    const child = spawn(process.execPath, [EFED_BIN, "dashboard", "--rpc", chain.url, "--deployment", deploymentFile, "--port", "0", "--poll-interval-ms", "200", "--measure-interval-ms", "0"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const listening = await new Promise<{ url: string; dashboard: string }>((resolve, reject) => {
      let out = "";
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        const line = out.split("\n").find((l) => l.includes('"listening"'));
        if (line !== undefined) resolve(JSON.parse(line) as { url: string; dashboard: string });
      });
      child.once("exit", (code) => reject(new Error(`efed dashboard exited with ${code}: ${stderr}`)));
    });
    expect(listening.dashboard).toBe(`${listening.url}/dashboard/`);
    const root = await fetch(listening.url, { redirect: "manual" });
    expect([root.status, root.headers.get("location")]).toEqual([302, "/dashboard/"]);
    expect(await (await fetch(listening.dashboard)).text()).toContain("<title>eFed dashboard</title>");
    let state: Snapshot | undefined;
    for (let i = 0; i < 100 && state === undefined; i++) {
      const r = await fetch(`${listening.url}/dashboard/state`);
      if (r.status === 200) state = (await r.json()) as Snapshot;
      else await new Promise((done) => setTimeout(done, 100));
    }
    expect(state?.models.map((m) => [m.id, m.name, m.numLayers, m.servers])).toEqual([[VARIANT, "cli-model", 12, []]]);
    const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  }, 60_000);

  it("names a bad --gateway URL and a missing deployment file", async () => {
    const bad = await runEfed("dashboard", "--rpc", chain.url, "--gateway", "ftp://x");
    expect([bad.code, bad.stderr.split("\n")[0]]).toEqual([1, `error: option '--gateway <url>' argument 'ftp://x' is invalid. "ftp://x" is not an http:// or https:// URL.`]);
    const missing = join(scratch.dir, "none.json");
    const none = await runEfed("dashboard", "--rpc", chain.url, "--deployment", missing, "--port", "0");
    expect([none.code, none.stderr.trim()]).toEqual([1, `efed: no deployment file ${missing}: run npm run deploy, or pass --deployment FILE`]);
  }, 60_000);
});

describe("efed gateway --dashboard", () => {
  it("needs --rpc", async () => {
    const r = await runEfed("gateway", "--model", KJV, "--port", "0", "--dashboard");
    expect([r.code, r.stderr.trim()]).toEqual([1, "efed: --dashboard needs --rpc: the dashboard shows the chain's servers, stakes and disputes"]);
  }, 60_000);
});
