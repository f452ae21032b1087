import { Command } from "commander";
import { buildManifest, writeManifest } from "../../engine/model/manifest.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";

/** `efed manifest`: hash a model directory's tensors into efed-manifest.json and print its variant id. */
export function manifestCommand(): Command {
  return new Command("manifest")
    .description("write efed-manifest.json (config, tensor hashes, compression) and print the variant id")
    .requiredOption("--model <dir>", "model directory")
    .action((flags: { model: string }) => {
      const model = ModelDirectory.open(flags.model);
      // a compressed directory keeps the compression its manifest records
      const variantId = writeManifest(flags.model, buildManifest(model, model.compression));
      model.close();
      console.log(variantId);
    });
}
