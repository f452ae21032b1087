import { execFile, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tinyConfig, writeRandomModel } from "../../engine/model/randomModel.js";
import { scratchDir } from "../engine/helpers.js";
import { EFED_BIN as bin, spawnEfedServer, stopProcess } from "../support/efedProcess.js";

const run = promisify(execFile);
const scratch = scratchDir();
const modelDir = join(scratch.dir, "tiny");
const children: ChildProcess[] = [];

/** Starts `efed server` and resolves with the URL it prints once listening. */
const startServer = async (layers: string, store: string): Promise<string> =>
  (await spawnEfedServer(["--model", modelDir, "--layers", layers, "--port", "0", "--store", store], children)).url;

beforeAll(() => writeRandomModel(modelDir, tinyConfig(), { seed: 4, dtype: "F32", std: 0.15 }));
afterAll(async () => {
  await Promise.all(children.map(stopProcess));
  scratch.cleanup();
});

describe("efed server + efed generate --route", () => {
  it("two server processes produce the tokens of the local engine, forwarded or relayed", async () => {
    const urls = await Promise.all([startServer("0:2", join(scratch.dir, "a.sqlite")), startServer("2:4", join(scratch.dir, "b.sqlite"))]);
    const args = ["generate", "--model", modelDir, "--ids", "3,1,4,1,5", "--max-tokens", "16", "--json"];
    const forwarded = await run(process.execPath, [bin, ...args, "--route", urls.join(",")]);
    const relayed = await run(process.execPath, [bin, ...args, "--route", urls.join(","), "--no-forward"]);
    const local = await run(process.execPath, [bin, ...args]);
    expect(JSON.parse(forwarded.stdout)).toEqual(JSON.parse(local.stdout));
    expect(JSON.parse(relayed.stdout)).toEqual(JSON.parse(local.stdout));
    expect(forwarded.stderr).toBe("");
    expect(relayed.stderr).toBe("");
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
});
