/**
 * The devnet's cheating server (`npm start -- --cheater KIND`): `efed server` itself, with the same
 * flags and the same chain duties (registration, commitments, payments), whose shard cheats
 * through the hook the verifier's tests use (scripts/devnet/faultyShard.ts) from its first step on,
 * or whose store withholds every step. Not a flag of `efed server`: only this script builds it.
 *
 *   node --import tsx scripts/devnet/cheatingServer.ts --cheat KIND [--other-model DIR] -- EFED_SERVER_FLAGS…
 */
import { Command, Option } from "commander";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { Shard } from "../../engine/runtime/shard.js";
import { serverCommand, type ServerHooks } from "../../node/commands/server.js";
import { describeChainError } from "../../protocol/contractErrors.js";
import { EFedError } from "../../protocol/errors.js";
import { faultyShard, withholdSteps, type Fault } from "./faultyShard.js";
import { CHEAT_KINDS, type CheatKind } from "./options.js";

/** Noise added to every output value: far outside the verifier's tolerance, small enough to keep the text readable. */
const NOISE_AMPLITUDE = 0.05;

/** How a server of `kind` cheats, as hooks on `efed server`. `otherModel`: the weights an `otherWeights` cheater runs. */
export function cheatingHooks(kind: CheatKind, otherModel: string | undefined): ServerHooks {
  if (kind === "withhold") return { store: (store) => withholdSteps(store, 0n) };
  const faultFor = async (model: ModelDirectory, first: number, last: number): Promise<Fault> => {
    switch (kind) {
      case "noise":
        return { kind, amplitude: NOISE_AMPLITUDE };
      case "skip":
      case "lowerPrecision":
        return { kind };
      case "fewerLayers":
        if (last - first < 2) throw new Error(`a fewerLayers cheater needs at least 2 layers, it serves ${first}:${last}`);
        return { kind, lesser: await Shard.load(model, first, last - 1) };
      case "otherWeights":
        if (otherModel === undefined) throw new Error("an otherWeights cheater needs --other-model DIR (the weights it runs instead)");
        return { kind, other: await Shard.load(ModelDirectory.open(otherModel), first, last) };
    }
  };
  return { shard: async (loaded, model, { first, last }) => faultyShard(loaded, await faultFor(model, first, last), 0) };
}

async function main(argv: readonly string[]): Promise<number> {
  const split = argv.indexOf("--");
  const own = split === -1 ? argv : argv.slice(0, split);
  const serverArgs = split === -1 ? [] : argv.slice(split + 1);
  const flags = new Command("cheatingServer")
    .addOption(new Option("--cheat <kind>", "how the server cheats").choices(CHEAT_KINDS).makeOptionMandatory())
    .option("--other-model <dir>", "with --cheat otherWeights: the model directory whose weights it runs instead")
    .parse([...own], { from: "node" })
    .opts<{ cheat: CheatKind; otherModel?: string }>();
  try {
    await serverCommand(cheatingHooks(flags.cheat, flags.otherModel)).parseAsync([...serverArgs], { from: "user" });
    return 0;
  } catch (err) {
    console.error(`cheating server: ${err instanceof EFedError ? err.message : describeChainError(err)}`);
    return 1;
  }
}

process.exitCode = await main(process.argv);
