import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { chatCommand } from "../client/commands/chat.js";
import { gatewayCommand } from "../client/commands/gateway.js";
import { generateCommand } from "../client/commands/generate.js";
import { compressCommand } from "../node/commands/compress.js";
import { evalCommand } from "../node/commands/eval.js";
import { manifestCommand } from "../node/commands/manifest.js";
import { serverCommand } from "../node/commands/server.js";
import { verifierCommand } from "../node/commands/verifier.js";

const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };

/**
 * The `efed` command. Subcommands live beside the code they drive (`node/` for servers and
 * verifiers, `client/` for wallets and generation) and are attached here, the only place that
 * sees both sides.
 */
export function buildProgram(): Command {
  const program = new Command()
    .name("efed")
    .description(
      "eFed: serve and use a large language model split across staked servers, verified and paid per token.",
    )
    .version(version, "-V, --version", "print the eFed version")
    .showHelpAfterError()
    .exitOverride();
  for (const sub of [generateCommand(), chatCommand(), gatewayCommand(), serverCommand(), verifierCommand(), manifestCommand(), compressCommand(), evalCommand()]) program.addCommand(sub.copyInheritedSettings(program));
  return program;
}

/** Runs the CLI on `argv` (process.argv layout); returns the exit code instead of exiting. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    await buildProgram().parseAsync([...argv]);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    console.error(`efed: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}
