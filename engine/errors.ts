import { EFedError } from "../protocol/errors.js";

/** A model directory or file is missing, malformed or unsupported. The message names the file and tensor. */
export class ModelFormatError extends EFedError {
  constructor(message: string, details?: Record<string, unknown>, cause?: unknown) {
    super("MODEL_FORMAT", message, {
      ...(details === undefined ? {} : { details }),
      ...(cause === undefined ? {} : { cause }),
    });
  }
}

/** The inference engine was asked something it cannot do (bad layer range, sequence too long, …). */
export class EngineError extends EFedError {
  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(code, message, details === undefined ? {} : { details });
  }
}
