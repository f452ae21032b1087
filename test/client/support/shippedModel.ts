import { join } from "node:path";
import { ModelDirectory } from "../../../engine/model/modelDir.js";
import { TextTokenizer } from "../../../engine/model/tokenizer.js";
import { Head } from "../../../engine/runtime/head.js";
import { LocalPipeline } from "../../../client/localPipeline.js";

/** The shipped model's directory (kjv-llama-6m: 8 layers, a tokenizer, no chat template). */
export const KJV = join(import.meta.dirname, "..", "..", "..", "models", "kjv-llama-6m");

/** The shipped model loaded for a test file: its head, all layers in process, its tokenizer. */
export interface ShippedModel {
  model: ModelDirectory;
  head: Head;
  local: LocalPipeline;
  tokenizer: TextTokenizer;
  release(): Promise<void>;
}

export async function loadShippedModel(): Promise<ShippedModel> {
  const model = ModelDirectory.open(KJV);
  const head = await Head.load(model);
  const local = await LocalPipeline.load(model);
  return {
    model,
    head,
    local,
    tokenizer: TextTokenizer.load(KJV),
    release: async () => {
      await local.release();
      await head.release();
      model.close();
    },
  };
}
