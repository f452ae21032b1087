import { execFile, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tinyConfig, writeRandomModel } from "../../../engine/model/randomModel.js";
import { scratchDir } from "../../engine/helpers.js";
import { Wallet, hexlify, randomBytes } from "ethers";
import { ShardConnection } from "../../../client/shardClient.js";
import { encodeActivations } from "../../../protocol/activations.js";
import { buildRoute } from "../../../protocol/forwarding.js";
import { ErrorCode } from "../../../protocol/wire.js";
import { EFED_BIN as bin, spawnEfedServer, stopProcess } from "../../support/efedProcess.js";
import { holdingRelay } from "../../support/holdingRelay.js";
import { generatedJson } from "../../support/generateOutput.js";

const run = promisify(execFile);
const scratch = scratchDir();
const modelDir = join(scratch.dir, "tiny");
const children: ChildProcess[] = [];

/** Starts `efed server` and resolves with the URL it prints once listening. */
const startServer = async (layers: string, store: string, extra: string[] = []): Promise<string> =>
  (await spawnEfedServer(["--model", modelDir, "--layers", layers, "--port", "0", "--store", store, "--forward-private", ...extra], children)).url;

beforeAll(() => writeRandomModel(modelDir, tinyConfig(), { seed: 4, dtype: "F32", std: 0.15 }));
afterAll(async () => {
  await Promise.all(children.map((c) => stopProcess(c)));
  scratch.cleanup();
}, 30_000);

describe("efed server + efed generate --route", () => {
  it("two server processes produce the tokens of the local engine, forwarded or relayed", async () => {
    // batching that waits for nothing, and the default: the tokens are the same
    const urls = await Promise.all([
      startServer("0:2", join(scratch.dir, "a.sqlite"), ["--batch-gather-ms", "0", "--batch-active-ms", "0"]),
      startServer("2:4", join(scratch.dir, "b.sqlite")),
    ]);
    const args = ["generate", "--model", modelDir, "--ids", "3,1,4,1,5", "--max-tokens", "16", "--json"];
    const forwarded = await run(process.execPath, [bin, ...args, "--route", urls.join(",")]);
    const relayed = await run(process.execPath, [bin, ...args, "--route", urls.join(","), "--no-forward"]);
    const local = await run(process.execPath, [bin, ...args]);
    expect(generatedJson(forwarded.stdout)).toEqual(generatedJson(local.stdout));
    expect(generatedJson(relayed.stdout)).toEqual(generatedJson(local.stdout));
    expect(forwarded.stderr).toBe("");
    expect(relayed.stderr).toBe("");
  });

  it("without --key creates a key file once, and a restart serves under the same address and store", async () => {
    const dataDir = join(scratch.dir, "data");
    const args = ["--model", modelDir, "--layers", "0:4", "--port", "0", "--data-dir", dataDir];
    const first = await spawnEfedServer(args, children);
    await stopProcess(children[children.length - 1]!);
    const keyFile = join(dataDir, "efed-server.key");
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(new Wallet(readFileSync(keyFile, "utf8").trim()).address).toBe(first.address);
    const again = await spawnEfedServer(args, children);
    expect(again.address).toBe(first.address);
    expect(existsSync(join(dataDir, `efed-store-${first.address}.sqlite`))).toBe(true);
  });

  it("runs on transparent huge pages (glibc's malloc tunable) with a 4 MiB young generation; EFED_HUGEPAGES=0 leaves the pages off, a flag of the user's own stays", async () => {
    const tunables = (c: ChildProcess): string | undefined =>
      readFileSync(`/proc/${c.pid}/environ`, "utf8").split("\0").find((e) => e.startsWith("GLIBC_TUNABLES="));
    const semiSpace = (c: ChildProcess): string[] =>
      readFileSync(`/proc/${c.pid}/cmdline`, "utf8").split("\0").filter((a) => a.startsWith("--max-semi-space-size"));
    const args = (name: string): string[] => ["--model", modelDir, "--layers", "0:4", "--port", "0", "--store", join(scratch.dir, `${name}.sqlite`)];
    await spawnEfedServer(args("huge"), children, { GLIBC_TUNABLES: "" });
    expect(tunables(children.at(-1)!)).toBe("GLIBC_TUNABLES=glibc.malloc.hugetlb=1");
    expect(semiSpace(children.at(-1)!)).toEqual(["--max-semi-space-size=4"]);
    await spawnEfedServer(args("off"), children, { GLIBC_TUNABLES: "", EFED_HUGEPAGES: "0" });
    expect(tunables(children.at(-1)!)).toBe("GLIBC_TUNABLES=");
    expect(semiSpace(children.at(-1)!)).toEqual(["--max-semi-space-size=4"]);
    await spawnEfedServer(args("own"), children, { NODE_OPTIONS: "--max-semi-space-size=8" });
    expect(semiSpace(children.at(-1)!)).toEqual([]);
    await Promise.all(children.splice(-3).map((c) => stopProcess(c)));
  });

  it("refuses bad limits and half a TLS configuration before loading anything", async () => {
    const zero = await run(process.execPath, [bin, "server", "--model", modelDir, "--layers", "0:4", "--max-connections", "0"]).catch(
      (e: unknown) => e as { stderr: string; code: number },
    );
    expect(zero).toMatchObject({ code: 1 });
    expect((zero as { stderr: string }).stderr).toContain('"0" is not an integer in 1..');
    const gather = await run(process.execPath, [bin, "server", "--model", modelDir, "--layers", "0:4", "--batch-gather-ms", "1000"]).catch(
      (e: unknown) => e as { stderr: string; code: number },
    );
    expect(gather).toMatchObject({ code: 1 });
    expect((gather as { stderr: string }).stderr).toContain("option '--batch-gather-ms <ms>' argument '1000' is invalid. \"1000\" is not an integer in 0..100.");
    const funds = await run(process.execPath, [bin, "server", "--model", modelDir, "--layers", "0:4", "--ticket-funds-max-age-ms", "-1"]).catch(
      (e: unknown) => e as { stderr: string; code: number },
    );
    expect(funds).toMatchObject({ code: 1 });
    expect((funds as { stderr: string }).stderr).toContain("option '--ticket-funds-max-age-ms <ms>' argument '-1' is invalid. \"-1\" is not an integer in 0..60000.");
    const signEvery = await run(process.execPath, [bin, "server", "--model", modelDir, "--layers", "0:4", "--sign-every", "257"]).catch(
      (e: unknown) => e as { stderr: string; code: number },
    );
    expect(signEvery).toMatchObject({ code: 1 });
    expect((signEvery as { stderr: string }).stderr).toContain("option '--sign-every <n>' argument '257' is invalid. \"257\" is not an integer in 1..256.");
    const tls = await run(process.execPath, [bin, "server", "--model", modelDir, "--layers", "0:4", "--tls-cert", "x.pem"]).catch(
      (e: unknown) => e as { stderr: string; code: number },
    );
    expect((tls as { stderr: string }).stderr).toContain("give both --tls-cert and --tls-key, or neither");
  });

  it("refuses a bad layer range and a route that does not cover the model", async () => {
    const bad = await run(process.execPath, [bin, "server", "--model", modelDir, "--layers", "3:1"]).catch((e: unknown) => e as { stderr: string; code: number });
    expect(bad).toMatchObject({ code: 1 });
    expect((bad as { stderr: string }).stderr).toContain('layer range "3:1" is empty');
    const url = await startServer("1:4", join(scratch.dir, "c.sqlite"));
    const r = await run(process.execPath, [bin, "generate", "--model", modelDir, "--ids", "1", "--max-tokens", "2", "--route", url]).catch(
      (e: unknown) => e as { stderr: string; code: number },
    );
    expect((r as { stderr: string }).stderr).toContain(`${url} serves layers 1:4, expected the next to start at 0`);
  });

  it("on SIGTERM finishes a forwarded step in flight, refusing new work meanwhile, then exits 0", async () => {
    const first = await spawnEfedServer(["--model", modelDir, "--layers", "0:2", "--port", "0", "--store", join(scratch.dir, "t1.sqlite"), "--forward-private"], children);
    const child = children[children.length - 1]!;
    const second = await startServer("2:4", join(scratch.dir, "t2.sqlite"));
    // answers from the second server back to the first are held: the step stays in flight on the first
    const relay = await holdingRelay(second);
    try {
      const conns = await Promise.all([first.url, second].map((u) => ShardConnection.connect(u)));
      const ids = [hexlify(randomBytes(32)), hexlify(randomBytes(32))];
      const keys = await Promise.all(conns.map((c, i) => c.openSession(ids[i]!, 16)));
      const hidden = conns[0]!.info.hiddenSize;
      const step = { step: 0n, position: 0, outputEncoding: "fp32" as const };
      const route = buildRoute(conns[0]!.info.server, [{ url: relay.url, sessionId: ids[1]!, forwardKey: keys[1]!, server: conns[1]!.info.server }], { ...step, rows: 1 });
      const output = conns[1]!.awaitResult(ids[1]!, 0n);
      const done = conns[0]!.stepRouted({ sessionId: ids[0]!, ...step, input: encodeActivations(new Float32Array(hidden).fill(0.1), 1, hidden, "fp32"), route });
      expect((await output.result).output.rows).toBe(1);
      while (relay.held() === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      child.kill("SIGTERM");
      // once it refuses new work it is stopping, with the step still waiting for its answer
      let refusal: unknown;
      do {
        refusal = await conns[0]!.openSession(hexlify(randomBytes(32)), 4).then(
          () => undefined,
          (err: unknown) => err,
        );
      } while (refusal === undefined);
      expect(refusal).toMatchObject({ code: `SERVER_${ErrorCode.ShuttingDown}` });
      relay.release();
      await expect(done).resolves.toBeUndefined();
      expect(await exited).toBe(0);
      for (const c of conns) c.close();
    } finally {
      relay.release();
      await relay.close();
    }
  });
});
