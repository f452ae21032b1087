import { execFile } from "node:child_process";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { Wallet, isKeystoreJson } from "ethers";
import { afterAll, describe, expect, it } from "vitest";
import { scratchDir } from "../engine/helpers.js";
import { EFED_BIN } from "../support/efedProcess.js";

const scratch = scratchDir();
afterAll(() => scratch.cleanup());
// Hardhat's development account #1: a public test key
const KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const ADDRESS = new Wallet(KEY).address;

/** `efed ARGS` with `env` added (and no inherited key or password), stdin not a terminal. */
async function efed(env: Record<string, string>, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const base = { ...process.env };
  delete base.EFED_SERVER_KEY;
  delete base.EFED_KEY_PASSWORD;
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [EFED_BIN, ...args], { env: { ...base, ...env } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("efed operator key", () => {
  it("creates the server's key file once (mode 0600) and shows the same address after", async () => {
    const dir = join(scratch.dir, "new");
    const first = JSON.parse((await efed({}, "operator", "key", "--data-dir", dir)).stdout) as { address: string; keyFile: string; created: boolean };
    expect(first).toMatchObject({ keyFile: join(dir, "efed-server.key"), created: true, encrypted: false });
    expect(statSync(first.keyFile).mode & 0o777).toBe(0o600);
    const again = JSON.parse((await efed({}, "operator", "key", "--data-dir", dir)).stdout) as { address: string; created: boolean };
    expect(again).toEqual({ address: first.address, keyFile: first.keyFile, created: false, encrypted: false });
  }, 60_000);

  it("encrypts the key file with the password from the environment; the address stays, the key opens only with the password", async () => {
    const dir = join(scratch.dir, "enc");
    const file = join(dir, "efed-server.key");
    await efed({}, "operator", "key", "--data-dir", dir);
    writeFileSync(file, `${KEY}\n`, { mode: 0o600 });
    const enc = await efed({ EFED_KEY_PASSWORD: "correct horse" }, "operator", "key", "--data-dir", dir, "--encrypt");
    expect(enc.stderr).toBe("");
    expect(JSON.parse(enc.stdout)).toEqual({ address: ADDRESS, keyFile: file, created: false, encrypted: true });
    const text = readFileSync(file, "utf8");
    expect(isKeystoreJson(text)).toBe(true);
    expect(text).not.toContain(KEY.slice(2));
    expect(statSync(file).mode & 0o777).toBe(0o600);

    const open = await efed({ EFED_KEY_PASSWORD: "correct horse" }, "operator", "key", "--data-dir", dir);
    expect(JSON.parse(open.stdout)).toMatchObject({ address: ADDRESS, encrypted: true });
    const wrong = await efed({ EFED_KEY_PASSWORD: "wrong horse" }, "operator", "key", "--data-dir", dir);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr.trim()).toBe(`efed: wrong password for the encrypted keystore ${file}`);
    const none = await efed({}, "operator", "status", "--data-dir", dir);
    expect(none.stderr.trim()).toBe(`efed: ${file} is an encrypted keystore: set EFED_KEY_PASSWORD (or run efed operator in a terminal to be asked)`);
  }, 120_000);

  it("refuses to encrypt without a password, and operator commands without a key", async () => {
    const dir = join(scratch.dir, "nopw");
    await efed({}, "operator", "key", "--data-dir", dir);
    const r = await efed({}, "operator", "key", "--data-dir", dir, "--encrypt");
    expect(r.stderr.trim()).toBe("efed: --encrypt needs a password: set EFED_KEY_PASSWORD, or run it in a terminal to be asked");
    const missing = join(scratch.dir, "missing");
    const s = await efed({}, "operator", "deposit", "--amount", "1", "--data-dir", missing);
    expect(s.code).toBe(1);
    expect(s.stderr.trim()).toBe(
      `efed: no key: ${join(missing, "efed-server.key")} does not exist. Create it with efed operator key --data-dir ${missing}, or pass --key FILE / set EFED_SERVER_KEY`,
    );
  }, 60_000);
});
