/**
 * The one error base class of eFed. Every error a user can meet has a stable `code`, a short
 * message that names the bad value, optional `details`, and the underlying `cause` when there is one.
 */
export class EFedError extends Error {
  readonly code: string;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(
    code: string,
    message: string,
    options: { details?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options.details;
  }
}

/** A value given by a user or a peer is outside what is accepted. */
export class InvalidArgumentError extends EFedError {
  constructor(message: string, details?: Record<string, unknown>) {
    super("INVALID_ARGUMENT", message, details === undefined ? {} : { details });
  }
}
