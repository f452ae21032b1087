import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { JsonRpcProvider } from "ethers";
import type { Snapshot } from "../../client/dashboard/snapshot.js";
import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import { Ledger } from "../../client/wallet/ledger.js";
import { AuditLedger__factory, Commitments__factory, Disputes__factory, PaymentChannels__factory, Staking__factory, TrustScores__factory } from "../../types/ethers-contracts/index.js";
import type { Devnet } from "../../scripts/devnet/devnet.js";
import { DEVNET_RUN_PARAMS, SERVER_STAKE } from "../../scripts/devnet/params.js";
import { portInUse } from "../../scripts/devnet/ports.js";
import { scratchDir } from "../engine/helpers.js";

/**
 * `npm start` end to end: the devnet runs as `npm start` runs it (scripts/devnet/start.mjs in a
 * child process, so Ctrl-C is a real SIGINT), on free ports. One devnet per scenario: an honest one
 * (a chat completion through the gateway with the official openai client, paid, committed and
 * audited on chain) and one with a noise cheater (slashed through a dispute). Each ends with SIGINT
 * and checks that no process or port of the devnet is left.
 */
const START = fileURLToPath(new URL("../../scripts/devnet/start.mjs", import.meta.url));
const WAIT_MS = 120_000;
type Ready = Omit<Devnet, "stop" | "demo">;

interface Running {
  child: ProcessHandle;
  ready: Ready;
  stdout: () => string;
}
interface ProcessHandle {
  process: ChildProcess;
  exited: Promise<number | null>;
}

let current: Running | undefined;
const scratch = scratchDir();

afterEach(() => {
  // a failed test must not leave its devnet behind: every process it started is killed
  if (current === undefined) return;
  for (const p of current.ready.processes) killQuietly(p.pid);
  killQuietly(current.child.process.pid);
  current = undefined;
});

function killQuietly(pid: number | undefined): void {
  if (pid === undefined || !alive(pid)) return;
  process.kill(pid, "SIGKILL");
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw err;
  }
}

/** Starts `npm start -- ARGS` (the same entry point) and resolves once it says it is ready. */
async function startDevnet(name: string, args: string[]): Promise<Running> {
  const readyFile = join(scratch.dir, `${name}.json`);
  const child = spawn(process.execPath, ["--disable-warning=ExperimentalWarning", START, "--chain-port", "0", "--gateway-port", "0", "--ready-file", readyFile, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const handle = { process: child, exited };
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`npm start was not ready within ${WAIT_MS} ms:\n${out}`)), WAIT_MS);
    const check = (): void => {
      if (!/^ready in /m.test(out)) return;
      clearTimeout(timer);
      resolve();
    };
    child.stdout.on("data", check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`npm start exited with ${code} before it was ready:\n${out}`));
    });
  });
  const ready = JSON.parse(readFileSync(readyFile, "utf8")) as Ready;
  current = { child: handle, ready, stdout: () => out };
  return current;
}

/** SIGINT, as Ctrl-C sends it: the devnet exits 0 and leaves no process, no listening port and no temporary directory. */
async function interruptAndCheckNothingLeft(run: Running): Promise<void> {
  run.child.process.kill("SIGINT");
  expect(await run.child.exited).toBe(0);
  expect(run.stdout()).toMatch(/^stopped in [\d.]+ s; no process or port of the devnet is left$/m);
  const left = run.ready.processes.filter((p) => alive(p.pid)).map((p) => p.name);
  expect(left).toEqual([]);
  const listening: string[] = [];
  for (const p of run.ready.processes) if (p.port !== undefined && (await portInUse(p.port))) listening.push(`${p.name}:${p.port}`);
  expect(listening).toEqual([]);
  expect(existsSync(run.ready.dataDir)).toBe(false);
  current = undefined;
}

/** Polls `read` every second until it returns `expected` (deep equality) or `timeoutMs` passes; returns the last value read. */
async function eventually<T>(read: () => Promise<T>, expected: T, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = await read();
  while (JSON.stringify(last, big) !== JSON.stringify(expected, big) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 1_000));
    last = await read();
  }
  return last;
}
const big = (_k: string, v: unknown): unknown => (typeof v === "bigint" ? v.toString() : v);

/** A greedy chat completion through the gateway with the official openai client: the answer, and its route by server name (x-efed-servers). */
async function chat(run: Running, content: string, maxTokens: number): Promise<{ answer: OpenAI.ChatCompletion; route: string[] }> {
  const client = new OpenAI({ baseURL: `${run.ready.urls.gateway}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60_000 });
  const { data, response } = await client.chat.completions.create({ model: run.ready.modelId, messages: [{ role: "user", content }], max_tokens: maxTokens, temperature: 0 }).withResponse();
  const byUrl = new Map(Object.entries(run.ready.urls.servers).map(([n, u]) => [u, n]));
  const route = (response.headers.get("x-efed-servers") ?? "").split(",").map((u) => byUrl.get(u.trim()) ?? `unknown ${u}`);
  return { answer: data, route };
}

describe("npm start", () => {
  it("answers a chat completion through the gateway, paid per token; the servers redeem it, post the receipts and the verifier audits every one", async () => {
    const run = await startDevnet("honest", []);
    const { ready } = run;
    expect(run.stdout()).toMatch(/^demo: a paid, verified generation/m);
    expect(ready.processes.map((p) => p.name).sort()).toEqual(["chain", "gateway", "server-1", "server-2", "server-3", "server-4", "verifier-1", "verifier-2"]);

    const { answer, route } = await chat(run, "And God said", 16);
    expect([answer.choices[0]!.finish_reason, answer.usage!.completion_tokens, answer.choices[0]!.message.content!.length > 0]).toEqual(["length", 16, true]);
    expect(route).toEqual(["server-1", "server-2"]); // the cheaper pair (--prefer price)

    // the gateway serves the dashboard: both variants, every server by its layer range
    const layout = async (): Promise<string[]> => {
      const response = await fetch(`${ready.urls.dashboard}state`);
      if (response.status !== 200) return [`status ${response.status}`];
      const snapshot = (await response.json()) as Snapshot;
      return snapshot.models.flatMap((m) => m.servers.map((s) => `${s.operator.toLowerCase()} ${s.firstLayer}-${s.lastLayer}`)).sort();
    };
    const servers = ["server-1", "server-2", "server-3", "server-4"];
    const expectedLayout = servers.map((n, i) => `${ready.accounts[n]!.toLowerCase()} ${i % 2 === 0 ? "0-4" : "4-8"}`).sort();
    expect(await eventually(layout, expectedLayout, 30_000)).toEqual(expectedLayout);

    const provider = new JsonRpcProvider(ready.urls.chain, undefined, { staticNetwork: true, cacheTimeout: -1 });
    try {
      const channels = PaymentChannels__factory.connect(ready.addresses.channels, provider);
      const commitments = Commitments__factory.connect(ready.addresses.commitments, provider);
      const audits = AuditLedger__factory.connect(ready.addresses.auditLedger, provider);
      const ledger = Ledger.open(Ledger.pathFor(join(ready.dataDir, "wallet", "wallet.json")));
      try {
        const mine = ledger.list(31337n, ready.addresses.channels);
        // one channel per route server, none to the spares
        expect(mine.map((c) => c.server).sort()).toEqual([ready.accounts["server-1"], ready.accounts["server-2"]].sort());
        for (const c of mine) {
          // every voucher the wallet signed is redeemed on chain: paid = the last cumulative amount
          expect(await eventually(async () => (await channels.channel(c.channelId)).paid, c.cumulative)).toBe(c.cumulative);
          const redeemed = await channels.queryFilter(channels.filters.VoucherRedeemed(c.channelId));
          const fees = redeemed.reduce((s, e) => s + e.args.fee, 0n);
          expect(redeemed.reduce((s, e) => s + e.args.paidToServer, 0n) + fees).toBe(c.cumulative);
          expect(fees).toBe(redeemed.reduce((s, e) => s + ((e.args.paidToServer + e.args.fee) * DEVNET_RUN_PARAMS.feeBps) / 10_000n, 0n));
        }
        // every receipt the wallet holds is in a posted batch, and every posted receipt was audited and passed on chain
        for (const name of ["server-1", "server-2"]) {
          const server = ready.accounts[name]!;
          const held = ledger.receiptTotals().get(server)!.steps;
          const posted = async (): Promise<number> => (await commitments.queryFilter(commitments.filters.BatchPosted(undefined, server))).reduce((s, e) => s + Number(e.args.receiptCount), 0);
          expect([name, await eventually(posted, held)]).toEqual([name, held]);
          const passed = async (): Promise<number> => (await audits.queryFilter(audits.filters.PassesRecorded(undefined, ready.accounts["verifier-1"], server))).reduce((s, e) => s + e.args.leaves.length, 0);
          expect([name, await eventually(passed, held)]).toEqual([name, held]);
        }
      } finally {
        ledger.close();
      }
    } finally {
      provider.destroy();
    }
    await interruptAndCheckNothingLeft(run);
  }, 300_000);

  it("with --cheater noise: the cheater takes the route, the verifier challenges it, the committee finds it at fault and it is slashed", async () => {
    const run = await startDevnet("cheater", ["--cheater", "noise", "--no-demo"]);
    const { ready } = run;
    const cheater = ready.accounts["cheater-noise"]!;
    expect((await chat(run, "In the beginning", 8)).route).toEqual(["server-1", "cheater-noise"]);

    const provider = new JsonRpcProvider(ready.urls.chain, undefined, { staticNetwork: true, cacheTimeout: -1 });
    try {
      const disputes = Disputes__factory.connect(ready.addresses.disputes, provider);
      const staking = Staking__factory.connect(ready.addresses.staking, provider);
      const trust = TrustScores__factory.connect(ready.addresses.trust, provider);
      // the first dispute: opened by the auditing verifier, settled ServerAtFault (1) with the full serverSlash
      const firstSettled = async (): Promise<string> => {
        const e = (await disputes.queryFilter(disputes.filters.DisputeSettled()))[0];
        if (e === undefined) return "none settled yet";
        const d = await disputes.dispute(e.args.disputeId);
        return `${d.server === cheater ? "cheater" : d.server} by ${d.challenger === ready.accounts["verifier-1"] ? "verifier-1" : d.challenger}: outcome ${e.args.outcome}, slashed ${e.args.slashed}`;
      };
      const expected = `cheater by verifier-1: outcome 1, slashed ${DEVNET_RUN_PARAMS.disputes.serverSlash}`;
      expect(await eventually(firstSettled, expected, 150_000)).toBe(expected);
      // its stake lost what every settled dispute took (a later batch may have its own dispute), its trust fell below θ
      const slashed = (await disputes.queryFilter(disputes.filters.DisputeSettled())).reduce((sum, e) => sum + e.args.slashed, 0n);
      expect((await staking.operator(cheater)).bonded).toBe(SERVER_STAKE - slashed);
      expect(await trust.isTrusted(cheater)).toBe(false);
      // only the cheater was ever accused: the honest server on the same route never
      const accused = new Set((await disputes.queryFilter(disputes.filters.DisputeOpened())).map((e) => e.args.server));
      expect([...accused]).toEqual([cheater]);
    } finally {
      provider.destroy();
    }
    await interruptAndCheckNothingLeft(run);
  }, 300_000);
});
