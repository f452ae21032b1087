import type { Interface } from "ethers";
import { EFedError } from "../../protocol/errors.js";
import {
  AuditLedger__factory,
  Commitments__factory,
  Disputes__factory,
  EFedToken__factory,
  ModelRegistry__factory,
  Staking__factory,
  TrustScores__factory,
} from "../../types/ethers-contracts/index.js";

/** Every contract whose custom errors a verifier's transaction can meet (Disputes and AuditLedger call into Staking, Commitments and the token). */
const INTERFACES: readonly Interface[] = [
  Disputes__factory.createInterface(),
  AuditLedger__factory.createInterface(),
  Staking__factory.createInterface(),
  Commitments__factory.createInterface(),
  EFedToken__factory.createInterface(),
  ModelRegistry__factory.createInterface(),
  TrustScores__factory.createInterface(),
];

/** A contract call reverted; `errorName` is its custom error (e.g. DisputesWindowClosed) when the revert data decodes. */
export class ChainCallError extends EFedError {
  constructor(
    readonly action: string,
    readonly errorName: string | undefined,
    message: string,
    cause: unknown,
  ) {
    super("CHAIN_CALL_FAILED", message, { details: { action, errorName }, cause });
  }
}

/** The custom error in `err`'s revert data, as `Name(arg, …)`, or undefined when there is none this side knows. */
export function decodeRevert(err: unknown): { name: string; text: string } | undefined {
  const data = revertData(err);
  if (data === undefined) return undefined;
  for (const iface of INTERFACES) {
    try {
      const parsed = iface.parseError(data);
      if (parsed !== null) return { name: parsed.name, text: `${parsed.name}(${parsed.args.map((a: unknown) => String(a)).join(", ")})` };
    } catch {
      // not this contract's error: try the next interface
    }
  }
  return undefined;
}

/** Runs a contract call; a revert becomes a ChainCallError that names `action` and the decoded error. */
export async function chainCall<T>(action: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    const decoded = decodeRevert(err);
    const why = decoded?.text ?? (err instanceof Error ? (err as { shortMessage?: string }).shortMessage ?? err.message : String(err));
    throw new ChainCallError(action, decoded?.name, `${action} failed: ${why}`, err);
  }
}

function revertData(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e !== null && typeof e === "object" && depth < 5; depth++) {
    const data = (e as { data?: unknown }).data;
    if (typeof data === "string" && data.startsWith("0x") && data.length >= 10) return data;
    const info = (e as { info?: { error?: { data?: unknown } } }).info?.error?.data;
    if (typeof info === "string" && info.startsWith("0x") && info.length >= 10) return info;
    e = (e as { error?: unknown; cause?: unknown }).error ?? (e as { cause?: unknown }).cause;
  }
  return undefined;
}
