/**
 * `npm start`: the whole eFed network on this machine (scripts/devnet/devnet.ts), until Ctrl-C.
 * Run through scripts/devnet/start.mjs, which checks the install first.
 */
import { CommanderError } from "commander";
import { describeChainError } from "../../protocol/contractErrors.js";
import { EFedError } from "../../protocol/errors.js";
import { ChildStartError } from "./children.js";
import { startDevnet, type Devnet } from "./devnet.js";
import { devnetCommand, type DevnetOptions } from "./options.js";
import { PortInUseError } from "./ports.js";

type Flags = Omit<DevnetOptions, "log" | "signal">;

export async function main(argv: readonly string[]): Promise<number> {
  let flags: Flags;
  try {
    flags = devnetCommand().exitOverride().parse([...argv]).opts<Flags>();
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    throw err;
  }
  const abort = new AbortController();
  let devnet: Devnet | undefined;
  const stopped = new Promise<string>((resolve) => {
    const onSignal = (signal: string): void => {
      if (abort.signal.aborted) return console.log(`(${signal} again: already stopping, every process gets at most --stop-grace-ms)`);
      abort.abort(new Error(`${signal} while starting`));
      resolve(signal);
    };
    process.on("SIGINT", () => onSignal("SIGINT"));
    process.on("SIGTERM", () => onSignal("SIGTERM"));
  });
  try {
    devnet = await startDevnet({ ...flags, signal: abort.signal });
  } catch (err) {
    if (abort.signal.aborted) {
      console.log("stopped while starting; every process it started has exited");
      return 130;
    }
    console.error(`npm start: ${describeStartError(err)}`);
    return 1;
  }
  const g = devnet.urls.gateway;
  console.log(`ready in ${(devnet.timings.ready! / 1000).toFixed(1)} s (chain ${sec(devnet.timings.chain)}, contracts ${sec(devnet.timings.deploy)}, servers ${sec(devnet.timings.servers)}, gateway ${sec(devnet.timings.gateway)}${devnet.timings.demo === undefined ? "" : `, demo answered ${sec(devnet.timings.demo)}`}). Try:`);
  console.log(`  curl -s ${g}/v1/chat/completions -H 'content-type: application/json' -d '{"model":"${devnet.modelId}","messages":[{"role":"user","content":"And God said"}],"max_tokens":32}'`);
  console.log(`  OpenAI clients: base URL ${g}/v1, any API key. Dashboard: ${devnet.urls.dashboard}. Ctrl-C stops everything.`);
  const signal = await stopped;
  const t = performance.now();
  console.log(`${signal}: stopping ${devnet.processes.length} processes…`);
  await devnet.stop();
  console.log(`stopped in ${((performance.now() - t) / 1000).toFixed(1)} s; no process or port of the devnet is left`);
  return 0;
}

function sec(ms: number | undefined): string {
  return ms === undefined ? "-" : `${(ms / 1000).toFixed(1)} s`;
}

/** A start failure in one paragraph: the errors that explain themselves as they are, a chain error decoded. */
function describeStartError(err: unknown): string {
  if (err instanceof PortInUseError || err instanceof ChildStartError || err instanceof EFedError) return err.message;
  const message = describeChainError(err);
  if (/ECONNREFUSED|fetch failed|could not detect network/i.test(message)) return `no JSON-RPC node answered (${message}); with --rpc, check the URL`;
  return message;
}
