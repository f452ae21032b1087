import type { QuantBits } from "../../engine/model/projection.js";
import { InvalidArgumentError } from "../../protocol/errors.js";

/** The methods `efed compress` accepts: a low-rank part, a quantized part, or both. */
export const METHODS = ["svd", "svd-whiten", "int8", "int4", "svd+int8", "svd-whiten+int8", "svd+int4", "svd-whiten+int4"] as const;

export interface CompressionMethod {
  name: string;
  /** Plain truncated SVD, or activation-aware (whitened by calibration activations). */
  svd: "svd" | "svd-whiten" | undefined;
  /** Weight bits of every stored factor (MatMulNBits), when quantized. */
  bits: QuantBits | undefined;
}

export function parseMethod(name: string): CompressionMethod {
  if (!(METHODS as readonly string[]).includes(name)) {
    throw new InvalidArgumentError(`unknown compression method "${name}" (expected one of ${METHODS.join(", ")})`);
  }
  const parts = name.split("+");
  const svd = parts.find((p) => p.startsWith("svd")) as CompressionMethod["svd"];
  const quant = parts.find((p) => p.startsWith("int"));
  return { name, svd, bits: quant === undefined ? undefined : (Number(quant.slice(3)) as QuantBits) };
}
