import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { freePort, type LocalChain } from "./hardhatNode.js";

/** The anvil binary shipped by @foundry-rs/anvil-linux-amd64 (a second EVM node implementation, besides Hardhat's). */
export const ANVIL_BIN = fileURLToPath(new URL("../../node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil", import.meta.url));

/** Starts anvil on a free 127.0.0.1 port (`chainId` default 31337, anvil's and Hardhat's devnet id); resolves once it listens. */
export async function startAnvil(opts: { chainId?: number; timeoutMs?: number } = {}): Promise<LocalChain> {
  const port = await freePort();
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const child = spawn(ANVIL_BIN, ["--host", "127.0.0.1", "--port", String(port), "--chain-id", String(opts.chainId ?? 31337)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`anvil did not start within ${timeoutMs} ms:\n${output}`)), timeoutMs);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (output.includes("Listening on")) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`anvil exited with ${code}:\n${output}`));
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}
