import { concat, getBytes, isHexString, keccak256 } from "ethers";
import { InvalidArgumentError } from "./errors.js";

/**
 * A binary Merkle tree over 32-byte leaves whose inner nodes hash the sorted pair, as
 * OpenZeppelin's `MerkleProof` verifies: parent = keccak256(min(a, b) ‖ max(a, b)). Leaves stay in
 * the order given (receipt order); a level with an odd count carries its last node up unchanged,
 * so a proof is just the list of siblings met on the way to the root.
 */
export class MerkleTree {
  /** levels[0] are the leaves, the last level holds the root. */
  private readonly levels: Uint8Array[][];

  constructor(leaves: readonly string[]) {
    if (leaves.length === 0) throw new InvalidArgumentError("a Merkle tree needs at least one leaf");
    const bottom = leaves.map((leaf, i) => {
      if (!isHexString(leaf, 32)) throw new InvalidArgumentError(`leaf ${i} must be 32 bytes of hex, got ${leaf}`);
      return getBytes(leaf);
    });
    this.levels = [bottom];
    let level = bottom;
    while (level.length > 1) {
      const next: Uint8Array[] = [];
      for (let i = 0; i < level.length; i += 2) {
        const left = level[i]!;
        const right = level[i + 1];
        next.push(right === undefined ? left : hashPair(left, right));
      }
      this.levels.push(next);
      level = next;
    }
  }

  get size(): number {
    return this.levels[0]!.length;
  }

  get root(): string {
    return toHex(this.levels[this.levels.length - 1]![0]!);
  }

  /** Sibling hashes from leaf `index` up to the root. */
  proof(index: number): string[] {
    if (!Number.isInteger(index) || index < 0 || index >= this.size) {
      throw new InvalidArgumentError(`leaf index ${index} is outside [0, ${this.size})`);
    }
    const siblings: string[] = [];
    let i = index;
    for (let depth = 0; depth < this.levels.length - 1; depth++) {
      const level = this.levels[depth]!;
      const sibling = level[i ^ 1];
      if (sibling !== undefined) siblings.push(toHex(sibling));
      i >>= 1;
    }
    return siblings;
  }
}

/** Recomputes the root from `leaf` and its `proof`; true when it equals `root`. */
export function verifyMerkleProof(root: string, leaf: string, proof: readonly string[]): boolean {
  let node = getBytes(leaf);
  for (const sibling of proof) node = hashPair(node, getBytes(sibling));
  return toHex(node) === root.toLowerCase();
}

function hashPair(a: Uint8Array, b: Uint8Array): Uint8Array {
  return getBytes(keccak256(compare(a, b) <= 0 ? concat([a, b]) : concat([b, a])));
}

function compare(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 32; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return 0;
}

function toHex(bytes: Uint8Array): string {
  return "0x" + Buffer.from(bytes).toString("hex");
}
