// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Step receipts
/// @notice A server signs one receipt per step it computes; the receipt's EIP-712 struct hash is also
///         its leaf in the Merkle tree whose root the server commits on chain. The TypeScript side
///         (`protocol/receipt.ts`) builds the same bytes; tests hold the two together.
library ReceiptLib {
    struct Receipt {
        /// @dev Client-chosen session id, unique per (client, server) session.
        bytes32 sessionId;
        /// @dev Step index within the session, from 0.
        uint64 step;
        /// @dev First layer computed.
        uint16 firstLayer;
        /// @dev One past the last layer computed.
        uint16 lastLayer;
        /// @dev Manifest hash of the model variant served.
        bytes32 variantId;
        /// @dev Activation hash of the hidden states received (see protocol/activations.ts).
        bytes32 inputHash;
        /// @dev Activation hash of the hidden states returned.
        bytes32 outputHash;
        /// @dev Tokens processed in this step (prompt tokens in a prefill, 1 in a decode step).
        uint32 tokens;
        /// @dev The staked address that computed the step and signs the receipt.
        address server;
    }

    bytes32 internal constant RECEIPT_TYPEHASH = keccak256(
        "Receipt(bytes32 sessionId,uint64 step,uint16 firstLayer,uint16 lastLayer,bytes32 variantId,"
        "bytes32 inputHash,bytes32 outputHash,uint32 tokens,address server)"
    );

    /// @notice The EIP-712 struct hash of `r`; also the receipt's Merkle leaf.
    function hash(Receipt memory r) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                RECEIPT_TYPEHASH,
                r.sessionId,
                r.step,
                r.firstLayer,
                r.lastLayer,
                r.variantId,
                r.inputHash,
                r.outputHash,
                r.tokens,
                r.server
            )
        );
    }
}
