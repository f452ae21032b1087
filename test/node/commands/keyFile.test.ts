import { execFile } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Wallet } from "ethers";
import { afterAll, describe, expect, it } from "vitest";
import { DEFAULT_KEY_FILE, loadOrCreateKey } from "../../../node/commands/keyFile.js";
import { scratchDir } from "../../engine/helpers.js";

const run = promisify(execFile);
const scratch = scratchDir();
afterAll(() => scratch.cleanup());
const keyFileModule = fileURLToPath(new URL("../../../node/commands/keyFile.ts", import.meta.url));

describe("the standalone server key", () => {
  it("is created once when several servers start together in a fresh data directory: all get the same key, none fails", async () => {
    const dataDir = join(scratch.dir, "fresh");
    const code = `import(${JSON.stringify(keyFileModule)}).then((m) => console.log(m.loadOrCreateKey(undefined, ${JSON.stringify(dataDir)}, false).wallet.address))`;
    const env = { ...process.env, EFED_SERVER_KEY: "" };
    const outs = await Promise.all(Array.from({ length: 8 }, () => run(process.execPath, ["--import", "tsx", "-e", code], { env })));
    const addresses = outs.map((o) => o.stdout.trim());
    const onDisk = new Wallet(readFileSync(join(dataDir, DEFAULT_KEY_FILE), "utf8").trim()).address;
    expect(addresses).toEqual(Array.from({ length: 8 }, () => onDisk));
    expect(statSync(join(dataDir, DEFAULT_KEY_FILE)).mode & 0o777).toBe(0o600);
    expect(readdirSync(dataDir)).toEqual([DEFAULT_KEY_FILE]); // no file written aside is left behind
    // and a later start reads it
    const again = loadOrCreateKey(undefined, dataDir, false);
    expect([again.wallet.address, again.created]).toEqual([onDisk, false]);
  }, 60_000);
});
