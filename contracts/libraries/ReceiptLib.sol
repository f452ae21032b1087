// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ICommitments} from "../interfaces/ICommitments.sol";

/// @title Step receipts and receipt chains
/// @notice A server writes one receipt per step it computes; the receipt's EIP-712 struct hash is its
///         leaf in the Merkle tree whose root the server commits on chain. For its clients, off chain,
///         the server signs its receipts through a `ReceiptChain` (a hash chain over a session's leaves)
///         every few steps and when the session closes, not one by one. The TypeScript side
///         (`protocol/receipt.ts`) builds the same receipt bytes; tests hold the two together.
///         Its checks are the ones every contract that takes a committed receipt as evidence runs
///         (Disputes, DataRequests, AuditLedger): internal, so they cost no extra deployment or call.
library ReceiptLib {
    /// @notice Batch `batchId`'s receipts could be taken as evidence until `deadline`; it is `nowTs`.
    error ReceiptWindowClosed(uint256 batchId, uint64 deadline, uint64 nowTs);
    /// @notice The receipt with leaf `leaf` is not under batch `batchId` (or not of its registration).
    error ReceiptNotInBatch(uint256 batchId, bytes32 leaf);

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
        /// @dev The staked address that computed the step and commits the receipt.
        address server;
    }

    /// @notice What a server signs for its receipts off chain: the head of the hash chain of a session's
    ///         receipt leaves after step `lastStep`. A session's chain starts at bytes32(0) before step 0;
    ///         steps are consecutive from 0, and after step n the head is
    ///         head_n = chainNext(head_{n-1}, leaf_n), where leaf_n = hash(receipt of step n). The server
    ///         signs the EIP-712 digest of ReceiptChain{sessionId, server, lastStep: n, head: head_n}
    ///         under Commitments' EIP-712 domain (the domain its receipts are hashed for), every few
    ///         steps and when the session closes. One signature thus covers every step up to
    ///         `lastStep`. Contracts do not take it as evidence (see `checkCommitted`); they define it
    ///         so that off-chain code can be tested against it (`ICommitments.receiptChainDigest`).
    struct ReceiptChain {
        /// @dev The session the chained receipts belong to.
        bytes32 sessionId;
        /// @dev The server that computed the steps and signs the chain.
        address server;
        /// @dev Step of the last receipt chained into `head`.
        uint64 lastStep;
        /// @dev Head of the chain after `lastStep`.
        bytes32 head;
    }

    bytes32 internal constant RECEIPT_TYPEHASH = keccak256(
        "Receipt(bytes32 sessionId,uint64 step,uint16 firstLayer,uint16 lastLayer,bytes32 variantId,"
        "bytes32 inputHash,bytes32 outputHash,uint32 tokens,address server)"
    );

    bytes32 internal constant RECEIPT_CHAIN_TYPEHASH =
        keccak256("ReceiptChain(bytes32 sessionId,address server,uint64 lastStep,bytes32 head)");

    /// @notice The EIP-712 struct hash of `r`; also the receipt's Merkle leaf. All fields are static,
    ///         so `abi.encode` lays the struct out as its nine words in order, as EIP-712 requires;
    ///         encoding from calldata skips a copy into memory.
    function hash(Receipt calldata r) internal pure returns (bytes32) {
        return keccak256(abi.encode(RECEIPT_TYPEHASH, r));
    }

    /// @notice The EIP-712 struct hash of `c` (all fields static, laid out as four words in order).
    function hashChain(ReceiptChain calldata c) internal pure returns (bytes32) {
        return keccak256(abi.encode(RECEIPT_CHAIN_TYPEHASH, c));
    }

    /// @notice The head of a receipt chain after appending `leaf` to the chain whose head is `head`.
    function chainNext(bytes32 head, bytes32 leaf) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(head, leaf));
    }

    /// @notice Checks that `receipt` is committed evidence against its batch's server: the batch's
    ///         challenge window is open and the Merkle proof puts the receipt under the batch's root,
    ///         which also binds it to the batch's server, variant and layers (`ICommitments.verifyReceipt`).
    ///         No signature is needed: only the server can have posted the batch (`postBatch` records
    ///         `msg.sender`), so a receipt under its root is one the server itself attested to on chain.
    ///         Returns the server and the leaf.
    function checkCommitted(
        ICommitments commitments,
        uint256 batchId,
        Receipt calldata receipt,
        bytes32[] calldata proof
    ) internal view returns (address server, bytes32 leaf) {
        ICommitments.Batch memory b = commitments.batch(batchId);
        if (block.timestamp > b.challengeDeadline) {
            revert ReceiptWindowClosed(batchId, b.challengeDeadline, uint64(block.timestamp));
        }
        leaf = hash(receipt);
        if (!commitments.verifyReceipt(batchId, receipt, proof)) revert ReceiptNotInBatch(batchId, leaf);
        server = b.server;
    }

    /// @notice Checks that `leaf` is under batch `batchId`'s `root` with `proof`.
    function checkLeaf(uint256 batchId, bytes32 root, bytes32 leaf, bytes32[] calldata proof) internal pure {
        if (!MerkleProof.verifyCalldata(proof, root, leaf)) revert ReceiptNotInBatch(batchId, leaf);
    }
}
