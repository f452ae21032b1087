/**
 * The verifier's names for the protocol-wide revert decoder (protocol/contractErrors.ts): a failed
 * call is a ChainCallError whose `errorName` is the contract's custom error.
 */
import { ContractCallError, contractCall, decodeContractError } from "../../protocol/contractErrors.js";

export { ContractCallError as ChainCallError, contractCall as chainCall };

/** The custom error in `err`'s revert data, as `Name(arg, …)`, or undefined when there is none this side knows. */
export function decodeRevert(err: unknown): { name: string; text: string } | undefined {
  const decoded = decodeContractError(err);
  return decoded === undefined ? undefined : { name: decoded.name, text: decoded.text };
}
