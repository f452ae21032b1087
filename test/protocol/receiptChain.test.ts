import { TypedDataEncoder, Wallet, ZeroAddress, ZeroHash, concat, hexlify, keccak256, randomBytes } from "ethers";
import { describe, expect, it } from "vitest";
import { RECEIPT_CHAIN_TYPES, receiptDomain } from "../../protocol/eip712.js";
import {
  RECEIPT_CHAIN_START,
  ReceiptChainState,
  chainNext,
  chainOf,
  receiptChainDigest,
  receiptChainHash,
  recoverReceiptChainSigner,
  signReceiptChain,
} from "../../protocol/receiptChain.js";

const leaves = [0, 1, 2].map(() => hexlify(randomBytes(32)));
const domain = receiptDomain(31337n, "0x" + "42".repeat(20));

describe("receipt chains", () => {
  it("chain a session's leaves from bytes32(0): head_n = keccak256(head_{n-1} ‖ leaf_n)", () => {
    expect(RECEIPT_CHAIN_START).toBe(ZeroHash);
    const heads = [keccak256(concat([ZeroHash, leaves[0]!]))];
    heads.push(keccak256(concat([heads[0]!, leaves[1]!])));
    heads.push(keccak256(concat([heads[1]!, leaves[2]!])));
    expect(chainNext(ZeroHash, leaves[0]!)).toBe(heads[0]);
    expect(chainOf(leaves)).toBe(heads[2]);
    expect(chainOf([])).toBe(ZeroHash);
    const state = new ReceiptChainState(hexlify(randomBytes(32)), Wallet.createRandom().address);
    leaves.forEach((leaf, i) => state.append(BigInt(i), leaf));
    expect([state.head, state.lastStep, state.signedThrough]).toEqual([heads[2], 2n, -1n]);
    expect(() => chainNext(ZeroHash, "0x1234")).toThrow("receipt chain head and leaf must be 32 bytes of hex, got 0x0000000000000000000000000000000000000000000000000000000000000000 and 0x1234");
  });

  it("takes steps in order only: a gap or a repeat is refused and changes nothing", () => {
    const state = new ReceiptChainState("0x" + "01".repeat(32), ZeroAddress);
    expect(() => state.append(1n, leaves[0]!)).toThrow(`receipt chain of session 0x${"01".repeat(32)} is at step -1: step 1 cannot follow`);
    state.append(0n, leaves[0]!);
    expect(() => state.append(0n, leaves[1]!)).toThrow("is at step 0: step 0 cannot follow");
    expect([state.head, state.lastStep]).toEqual([chainOf([leaves[0]!]), 0n]);
  });

  it("hashes, signs and recovers a chain head as EIP-712 ReceiptChain, as ethers does", async () => {
    const server = Wallet.createRandom();
    const head = { sessionId: hexlify(randomBytes(32)), server: server.address, lastStep: (1n << 64n) - 1n, head: chainOf(leaves) };
    expect(receiptChainHash(head)).toBe(TypedDataEncoder.hashStruct("ReceiptChain", RECEIPT_CHAIN_TYPES, head));
    expect(receiptChainDigest(domain, head)).toBe(TypedDataEncoder.hash(domain, RECEIPT_CHAIN_TYPES, head));
    const signature = signReceiptChain(server.signingKey, domain, head);
    expect(signature).toBe(await server.signTypedData(domain, RECEIPT_CHAIN_TYPES, head));
    expect(recoverReceiptChainSigner(domain, head, signature)).toBe(server.address);
    // any other head, step or session recovers to another address
    expect(recoverReceiptChainSigner(domain, { ...head, lastStep: 3n }, signature)).not.toBe(server.address);
    expect(() => receiptChainHash({ ...head, lastStep: 1n << 64n })).toThrow("receipt chain lastStep 18446744073709551616 is outside uint64");
    expect(() => receiptChainHash({ ...head, head: "0x12" })).toThrow("receipt chain head must be 32 bytes of hex, got 0x12");
  });
});
