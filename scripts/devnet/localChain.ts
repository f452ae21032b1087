import { fileURLToPath } from "node:url";
import type { JsonRpcProvider } from "ethers";
import type { ChildSet, DevnetChild } from "./children.js";
import type { ChainKind } from "./options.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
/** The anvil binary shipped by @foundry-rs/anvil-linux-amd64. */
export const ANVIL_BIN = `${root}node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil`;
const HARDHAT_CLI = `${root}node_modules/hardhat/dist/src/cli.js`;

/** Stage of the chain among the devnet's processes: it stops last. */
export const CHAIN_STAGE = 0;

/**
 * Starts a local node on 127.0.0.1:`port`, chain id 31337, with the well-known development
 * accounts: `hardhat node`, or anvil. With `stateFile` (anvil only) the chain is loaded from that
 * file when it exists and written back every few seconds and on exit.
 */
export async function startLocalChain(
  children: ChildSet,
  o: { kind: ChainKind; port: number; stateFile?: string; timeoutMs: number },
): Promise<{ url: string; child: DevnetChild }> {
  if (o.stateFile !== undefined && o.kind !== "anvil") throw new Error("only anvil keeps a chain's state in a file");
  const host = ["--host", "127.0.0.1", "--port", String(o.port)];
  const request =
    o.kind === "anvil"
      ? {
          command: ANVIL_BIN,
          args: [...host, "--chain-id", "31337", ...(o.stateFile === undefined ? [] : ["--state", o.stateFile, "--state-interval", "5"])],
          ready: (line: string) => line.includes("Listening on"),
        }
      : {
          command: process.execPath,
          args: [HARDHAT_CLI, "node", "--hostname", "127.0.0.1", "--port", String(o.port)],
          ready: (line: string) => line.includes("Started HTTP and WebSocket JSON-RPC server"),
        };
  const env = { ...process.env, CI: "true", HARDHAT_DISABLE_TELEMETRY: "true", HARDHAT_DISABLE_TELEMETRY_PROMPT: "true" };
  const { child } = await children.start({ name: "chain", stage: CHAIN_STAGE, env, timeoutMs: o.timeoutMs, ...request });
  return { url: `http://127.0.0.1:${o.port}`, child };
}

/**
 * Asks the node for a block every `everyMs`: audit samples are seeded by the block after a batch,
 * and dispute periods end by block time, so an idle devnet must still make blocks. A node that
 * refuses `evm_mine` (not a development node) is asked once; `onRefused` says so.
 */
export function mineEvery(provider: JsonRpcProvider, everyMs: number, onRefused: (why: string) => void): () => void {
  if (everyMs === 0) return () => undefined;
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    provider
      .send("evm_mine", [])
      .catch((err: unknown) => {
        clearInterval(timer);
        onRefused((err as Error).message);
      })
      .finally(() => (busy = false));
  }, everyMs);
  return () => clearInterval(timer);
}
