import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { describeChainError } from "../protocol/contractErrors.js";
import { EFedError } from "../protocol/errors.js";

const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };

/**
 * The subcommands, in the order `efed --help` lists them. Each lives beside the code it drives
 * (`node/` for servers and verifiers, `client/` for wallets and generation) and is loaded only when
 * it is run or listed: a server need not load the gateway, nor `efed wallet` ONNX Runtime (~4 MB of
 * a server's peak memory; half a second of a light command's start).
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  generate: async () => (await import("../client/commands/generate.js")).generateCommand(),
  chat: async () => (await import("../client/commands/chat.js")).chatCommand(),
  gateway: async () => (await import("../client/commands/gateway.js")).gatewayCommand(),
  dashboard: async () => (await import("../client/commands/dashboard.js")).dashboardCommand(),
  wallet: async () => (await import("../client/commands/wallet.js")).walletCommand(),
  server: async () => (await import("../node/commands/server.js")).serverCommand(),
  verifier: async () => (await import("../node/commands/verifier.js")).verifierCommand(),
  operator: async () => (await import("../node/commands/operator.js")).operatorCommand(),
  model: async () => (await import("../node/commands/model.js")).modelCommand(),
  manifest: async () => (await import("../node/commands/manifest.js")).manifestCommand(),
  compress: async () => (await import("../node/commands/compress.js")).compressCommand(),
  convert: async () => (await import("../node/commands/convert.js")).convertCommand(),
  eval: async () => (await import("../node/commands/eval.js")).evalCommand(),
};

/**
 * The `efed` command, with subcommand `only` attached when it is one (every subcommand otherwise:
 * for the overall help, and so that a mistyped name gets commander's suggestion). This is the only
 * place that sees both `node/` and `client/`.
 */
export async function buildProgram(only?: string): Promise<Command> {
  const program = new Command()
    .name("efed")
    .description(
      "eFed: serve and use a large language model split across staked servers, verified and paid per token.",
    )
    .version(version, "-V, --version", "print the eFed version")
    .showHelpAfterError()
    .exitOverride();
  const names = only !== undefined && Object.hasOwn(COMMANDS, only) ? [only] : Object.keys(COMMANDS);
  for (const sub of await Promise.all(names.map((name) => COMMANDS[name]!()))) program.addCommand(inheritSettings(sub, program));
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
    await (await buildProgram(argv[2])).parseAsync([...argv]);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    // an EFedError already says what went wrong; a raw ethers error is decoded (custom errors, empty results)
    console.error(`efed: ${err instanceof EFedError ? err.message : describeChainError(err)}`);
    return 1;
  }
}
