import { AbiCoder, keccak256 } from "ethers";
import { InvalidArgumentError } from "../../protocol/errors.js";

const TWO_POW_256 = 2n ** 256n;
/** Sample rates are resolved to this many parts (1e-9 steps). */
const RATE_SCALE = 1_000_000_000n;

/**
 * Whether the receipt with leaf `leaf` is audited, at `rate` (0..1), given `seedBlockHash`: the hash
 * of the block after the one that posted its batch, which did not exist when the server posted the
 * root. keccak256(abi.encode(seedBlockHash, leaf)) read as a number below 2^256 is under rate·2^256.
 * Deterministic: every verifier with the same rate samples the same receipts, and anyone can check
 * which receipts a verifier had to audit. See docs/verification.md for what a block producer can bias.
 */
export function isSampled(seedBlockHash: string, leaf: string, rate: number): boolean {
  checkSampleRate(rate);
  const draw = BigInt(keccak256(AbiCoder.defaultAbiCoder().encode(["bytes32", "bytes32"], [seedBlockHash, leaf])));
  const threshold = (TWO_POW_256 * BigInt(Math.round(rate * Number(RATE_SCALE)))) / RATE_SCALE;
  return draw < threshold;
}

export function checkSampleRate(rate: number): void {
  if (!(rate >= 0 && rate <= 1)) throw new InvalidArgumentError(`sample rate must be a number in [0, 1], got ${rate}`);
}
