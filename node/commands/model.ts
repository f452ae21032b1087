import { resolve, join } from "node:path";
import { pathToFileURL } from "node:url";
import { Command } from "commander";
import { MANIFEST_FILE, readManifest, variantIdOf } from "../../engine/model/manifest.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { registerVariant } from "../chain/variantRegistration.js";
import { withChainOptions, withOperatorChain, type ChainFlags } from "./operator.js";

/** `efed model register DIR`: put a model variant (manifest hash, layer count, manifest URI) in the registry. */
export function modelCommand(): Command {
  const model = new Command("model").description("model variants on chain");
  model.addCommand(
    withChainOptions(new Command("register"))
      .description(
        "register the variant of a model directory: its manifest hash, layer count and where the manifest can be fetched. " +
          "Needs the registry's REGISTRAR_ROLE; checks the role, the URI and whether the variant is already registered before sending",
      )
      .argument("<dir>", `model directory with ${MANIFEST_FILE} (write it with efed manifest --model DIR)`)
      .option("--manifest-uri <uri>", `where the manifest can be fetched (https://, ipfs://; default: file:// URL of DIR/${MANIFEST_FILE}, for devnets)`)
      .action(async (dir: string, flags: ChainFlags & { manifestUri?: string }) => {
        const manifest = readManifest(dir);
        if (manifest === undefined) throw new InvalidArgumentError(`${dir} has no ${MANIFEST_FILE}: write it first with efed manifest --model ${dir}`);
        const directory = ModelDirectory.open(dir);
        const numLayers = directory.config.numLayers;
        directory.close();
        const variantId = variantIdOf(manifest);
        const manifestURI = flags.manifestUri ?? pathToFileURL(resolve(join(dir, MANIFEST_FILE))).href;
        await withOperatorChain(flags, async (c) => {
          const r = await registerVariant(c, { variantId, numLayers, manifestURI });
          console.log(JSON.stringify({ variantId, numLayers, manifestURI, registered: r }));
        });
      }),
  );
  return model;
}
