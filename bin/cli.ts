import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";

const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };

/**
 * The `efed` command. Subcommands live beside the code they drive (`node/` for servers and
 * verifiers, `client/` for wallets and generation) and are attached here, the only place that
 * sees both sides.
 */
export function buildProgram(): Command {
  return new Command()
    .name("efed")
    .description(
      "eFed: serve and use a large language model split across staked servers, verified and paid per token.",
    )
    .version(version, "-V, --version", "print the eFed version")
    .showHelpAfterError()
    .exitOverride();
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
