// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReceiptLib} from "../libraries/ReceiptLib.sol";

/// @title Commitments
/// @notice A registered server commits to the work it did by posting, per batch, the Merkle root of
///         its signed step receipts. A batch is immutable; the block it was posted in starts its
///         challenge window, during which verifiers may audit any receipt under the root.
/// @dev Leaves are `ReceiptLib.hash(receipt)` (the EIP-712 struct hash); inner nodes hash the sorted
///      pair (OpenZeppelin `MerkleProof`), so a proof is just the list of siblings.
interface ICommitments {
    struct Batch {
        /// @dev Server that posted the batch.
        address server;
        /// @dev Number of receipts under the root.
        uint32 receiptCount;
        /// @dev Sum of the receipts' tokens.
        uint64 tokensServed;
        /// @dev Earliest receipt time covered (unix seconds).
        uint64 fromTime;
        /// @dev Latest receipt time covered (unix seconds).
        uint64 toTime;
        /// @dev Block in which the batch was posted: the challenge window starts here.
        uint64 postedBlock;
        /// @dev Timestamp of that block.
        uint64 postedAt;
        /// @dev Merkle root of the receipt leaves.
        bytes32 root;
    }

    /// @notice Only an active (registered and collateralized) server may post.
    error CommitmentsNotActiveServer(address account);
    /// @notice The root must not be zero.
    error CommitmentsZeroRoot();
    /// @notice A batch must hold at least one receipt.
    error CommitmentsEmptyBatch();
    /// @notice Every receipt covers at least one token: `tokens` must be >= `receipts`.
    error CommitmentsTokensBelowReceipts(uint64 tokens, uint32 receipts);
    /// @notice The time range must satisfy previousTo <= from <= to <= now.
    error CommitmentsBadTimeRange(uint64 fromTime, uint64 toTime, uint64 previousTo, uint64 nowTs);
    /// @notice This root was already posted.
    error CommitmentsDuplicateRoot(bytes32 root);
    /// @notice No batch has this id.
    error CommitmentsUnknownBatch(uint256 batchId);

    /// @notice Emitted once per posted batch.
    event BatchPosted(
        uint256 indexed batchId,
        address indexed server,
        bytes32 root,
        uint32 receiptCount,
        uint64 tokensServed,
        uint64 fromTime,
        uint64 toTime
    );

    /// @notice Posts a batch of the caller's receipts. Returns its id (0, 1, 2, … in posting order).
    function postBatch(
        bytes32 root,
        uint32 receiptCount,
        uint64 tokensServed,
        uint64 fromTime,
        uint64 toTime
    ) external returns (uint256 batchId);

    function batch(uint256 batchId) external view returns (Batch memory);

    function batchCount() external view returns (uint256);

    function serverBatchCount(address server) external view returns (uint256);

    /// @notice Batch ids of `server`, `limit` of them from `offset`.
    function serverBatchIds(address server, uint256 offset, uint256 limit) external view returns (uint256[] memory);

    /// @notice The receipt's Merkle leaf (its EIP-712 struct hash).
    function receiptLeaf(ReceiptLib.Receipt calldata receipt) external pure returns (bytes32);

    /// @notice The EIP-712 digest the server signs for `receipt` (this contract is the verifying contract).
    function receiptDigest(ReceiptLib.Receipt calldata receipt) external view returns (bytes32);

    /// @notice The address that signed `receipt`; reverts on a malformed or malleable signature.
    function receiptSigner(ReceiptLib.Receipt calldata receipt, bytes calldata signature) external view returns (address);

    /// @notice True when `receipt` was posted by its own server in `batchId` (proof checks out).
    function verifyReceipt(
        uint256 batchId,
        ReceiptLib.Receipt calldata receipt,
        bytes32[] calldata proof
    ) external view returns (bool);
}
