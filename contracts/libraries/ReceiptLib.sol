// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ICommitments} from "../interfaces/ICommitments.sol";

/// @title Step receipts
/// @notice A server signs one receipt per step it computes; the receipt's EIP-712 struct hash is also
///         its leaf in the Merkle tree whose root the server commits on chain. The TypeScript side
///         (`protocol/receipt.ts`) builds the same bytes; tests hold the two together.
///         Its checks are the ones every contract that takes a committed receipt as evidence runs
///         (Disputes, DataRequests, AuditLedger): internal, so they cost no extra deployment or call.
library ReceiptLib {
    /// @notice Batch `batchId`'s receipts could be taken as evidence until `deadline`; it is `nowTs`.
    error ReceiptWindowClosed(uint256 batchId, uint64 deadline, uint64 nowTs);
    /// @notice The receipt with leaf `leaf` is not under batch `batchId` (or not of its registration).
    error ReceiptNotInBatch(uint256 batchId, bytes32 leaf);
    /// @notice The receipt is signed by `signer`, not by the batch's server `server`.
    error ReceiptBadSignature(address signer, address server);

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

    /// @notice The EIP-712 struct hash of `r`; also the receipt's Merkle leaf. All fields are static,
    ///         so `abi.encode` lays the struct out as its nine words in order, as EIP-712 requires;
    ///         encoding from calldata skips a copy into memory.
    function hash(Receipt calldata r) internal pure returns (bytes32) {
        return keccak256(abi.encode(RECEIPT_TYPEHASH, r));
    }

    /// @notice Checks that `receipt` is committed evidence against its batch's server: the batch's
    ///         challenge window is open, the Merkle proof puts the receipt under the batch's root (which
    ///         also binds it to the batch's server, variant and layers: `ICommitments.verifyReceipt`), and
    ///         the server signed it (EIP-712 digest of Commitments' domain). Returns the server and the leaf.
    function checkCommitted(
        ICommitments commitments,
        uint256 batchId,
        Receipt calldata receipt,
        bytes calldata signature,
        bytes32[] calldata proof
    ) internal view returns (address server, bytes32 leaf) {
        ICommitments.Batch memory b = commitments.batch(batchId);
        if (block.timestamp > b.challengeDeadline) {
            revert ReceiptWindowClosed(batchId, b.challengeDeadline, uint64(block.timestamp));
        }
        leaf = hash(receipt);
        if (!commitments.verifyReceipt(batchId, receipt, proof)) revert ReceiptNotInBatch(batchId, leaf);
        address signer = commitments.receiptSigner(receipt, signature);
        if (signer != b.server) revert ReceiptBadSignature(signer, b.server);
        server = b.server;
    }

    /// @notice Checks that `leaf` is under batch `batchId`'s `root` with `proof`.
    function checkLeaf(uint256 batchId, bytes32 root, bytes32 leaf, bytes32[] calldata proof) internal pure {
        if (!MerkleProof.verifyCalldata(proof, root, leaf)) revert ReceiptNotInBatch(batchId, leaf);
    }
}
