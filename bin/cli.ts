import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { chatCommand } from "../client/commands/chat.js";
import { dashboardCommand } from "../client/commands/dashboard.js";
import { gatewayCommand } from "../client/commands/gateway.js";
import { generateCommand } from "../client/commands/generate.js";
import { walletCommand } from "../client/commands/wallet.js";
import { compressCommand } from "../node/commands/compress.js";
import { convertCommand } from "../node/commands/convert.js";
import { evalCommand } from "../node/commands/eval.js";
import { manifestCommand } from "../node/commands/manifest.js";
import { modelCommand } from "../node/commands/model.js";
import { operatorCommand } from "../node/commands/operator.js";
import { serverCommand } from "../node/commands/server.js";
import { verifierCommand } from "../node/commands/verifier.js";
import { describeChainError } from "../protocol/contractErrors.js";
import { EFedError } from "../protocol/errors.js";

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
  const commands = [generateCommand(), chatCommand(), gatewayCommand(), dashboardCommand(), walletCommand(), serverCommand(), verifierCommand(), operatorCommand(), modelCommand(), manifestCommand(), compressCommand(), convertCommand(), evalCommand()];
  for (const sub of commands) program.addCommand(inheritSettings(sub, program));
  return program;
}

/** Copies `parent`'s settings (exitOverride, help after error) to `command` and its own subcommands. */
function inheritSettings(command: Command, parent: Command): Command {
  command.copyInheritedSettings(parent);
  for (const sub of command.commands) inheritSettings(sub, command);
  return command;
}

/** Runs the CLI on `argv` (process.argv layout); returns the exit code instead of exiting. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    await buildProgram().parseAsync([...argv]);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    // an EFedError already says what went wrong; a raw ethers error is decoded (custom errors, empty results)
    console.error(`efed: ${err instanceof EFedError ? err.message : describeChainError(err)}`);
    return 1;
  }
}
