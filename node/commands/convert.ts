import { existsSync, statSync } from "node:fs";
import { Command, InvalidArgumentError, Option } from "commander";
import { EXPORT_TYPES, exportGguf, type ExportType } from "../convert/exportGguf.js";
import { importGguf } from "../convert/importGguf.js";
import type { QuantAccuracyLevel } from "../../engine/model/compression.js";
import { accuracyLevel } from "./options.js";

/** `efed convert`: a GGUF file into a model directory, or a model directory into a GGUF file. */
export function convertCommand(): Command {
  return new Command("convert")
    .description("convert between GGUF (llama.cpp) and an eFed model directory: FILE.gguf DIR imports, DIR FILE.gguf exports")
    .argument("<input>", "a .gguf file to import, or a model directory to export")
    .argument("<output>", "the model directory to write (import), or the .gguf file to write (export)")
    .addOption(new Option("--type <type>", "export only: store every matrix as this type (keep = as the directory stores it)").choices(EXPORT_TYPES).default("keep"))
    .option("--accuracy-level <level>", "import only: MatMulNBits accuracy level of quantized layers (0: float activations, audited at the dense tolerance, the int4 default; 4: activations rounded to int8 per block, faster, audited at 0.25, the int8 default)", accuracyLevel)
    .option("--json", "print the report as JSON")
    .action((input: string, output: string, flags: { type: ExportType; accuracyLevel?: QuantAccuracyLevel; json?: boolean }) => {
      const importing = input.endsWith(".gguf");
      if (!importing && !(existsSync(input) && statSync(input).isDirectory())) {
        throw new InvalidArgumentError(`${input} is neither a .gguf file nor a model directory`);
      }
      if (!importing && !output.endsWith(".gguf")) throw new InvalidArgumentError(`${output}: an export writes a .gguf file; name it FILE.gguf`);
      if (!importing && flags.accuracyLevel !== undefined) throw new InvalidArgumentError("--accuracy-level applies to imports; an export keeps the GGUF types, which carry no level");
      if (importing && flags.type !== "keep") throw new InvalidArgumentError(`--type ${flags.type} applies to exports; an import keeps the GGUF's types`);
      if (importing) {
        const report = importGguf(input, output, { accuracyLevel: flags.accuracyLevel });
        if (flags.json === true) return console.log(JSON.stringify(report, null, 1));
        const types = Object.entries(report.types).map(([t, n]) => `${n} ${t}`).join(", ");
        console.log(`${output}: ${report.tensors} tensors (matrices: ${types}), variant ${report.variantId}`);
        if (report.dequantized.length > 0) console.log(`dequantized to F32 (eFed quantizes only matrices): ${report.dequantized.join(", ")}`);
        if (report.tokenizerLeftOut !== undefined) console.log(`no tokenizer written: ${report.tokenizerLeftOut}`);
        return;
      }
      const report = exportGguf(input, output, flags.type);
      if (flags.json === true) return console.log(JSON.stringify(report, null, 1));
      console.log(`${output}: ${report.tensors} tensors, mostly ${report.fileType}`);
      if (report.maxScaleRounding > 0) console.log(`quantization scales rounded to F16: largest relative change ${report.maxScaleRounding.toExponential(2)}`);
      if (report.tokenizerLeftOut !== undefined) console.log(`no tokenizer included: ${report.tokenizerLeftOut}`);
    });
}
