import type { TypedDataDomain, TypedDataField } from "ethers";

/**
 * EIP-712 domains and types shared by the contracts and the TypeScript side. The names and
 * versions here must match the `EIP712(name, version)` constructors in `contracts/`.
 */
export const RECEIPT_DOMAIN_NAME = "eFed Receipts";
export const VOUCHER_DOMAIN_NAME = "eFed Payment Channels";
export const DOMAIN_VERSION = "1";

/** Mirrors `ReceiptLib.RECEIPT_TYPEHASH`. Field order matters: it is the hashed order. */
export const RECEIPT_TYPES: Record<string, TypedDataField[]> = {
  Receipt: [
    { name: "sessionId", type: "bytes32" },
    { name: "step", type: "uint64" },
    { name: "firstLayer", type: "uint16" },
    { name: "lastLayer", type: "uint16" },
    { name: "variantId", type: "bytes32" },
    { name: "inputHash", type: "bytes32" },
    { name: "outputHash", type: "bytes32" },
    { name: "tokens", type: "uint32" },
    { name: "server", type: "address" },
  ],
};

/** Mirrors `PaymentChannels.VOUCHER_TYPEHASH`. */
export const VOUCHER_TYPES: Record<string, TypedDataField[]> = {
  Voucher: [
    { name: "channelId", type: "bytes32" },
    { name: "cumulativeAmount", type: "uint256" },
  ],
};

/** The domain of receipts: the Commitments contract on `chainId` verifies them. */
export function receiptDomain(chainId: bigint, commitments: string): TypedDataDomain {
  return { name: RECEIPT_DOMAIN_NAME, version: DOMAIN_VERSION, chainId, verifyingContract: commitments };
}

/** The domain of vouchers: the PaymentChannels contract on `chainId` verifies them. */
export function voucherDomain(chainId: bigint, paymentChannels: string): TypedDataDomain {
  return { name: VOUCHER_DOMAIN_NAME, version: DOMAIN_VERSION, chainId, verifyingContract: paymentChannels };
}
