// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReceiptLib} from "../libraries/ReceiptLib.sol";
import {VariantId} from "./IModelRegistry.sol";

/// @title Commitments
/// @notice A registered server commits to the work it did by posting, per batch, the Merkle root of
///         its step receipts. Posting is the server's attestation: only it can post its batches, so a
///         receipt under one of its roots is evidence against it without a signature of its own (the
///         receipt-chain signatures clients hold are for off-chain use). A batch is immutable and bound
///         to the registration it was done under (variant, layer range, the stake behind it); it
///         records its own challenge deadline, so later changes of the challenge window never shorten
///         or stretch it.
/// @dev Leaves are `ReceiptLib.hash(receipt)` (the EIP-712 struct hash); inner nodes hash the sorted
///      pair (OpenZeppelin `MerkleProof`), so a proof is just the list of siblings. Roots are unique per
///      server, not globally: one server cannot block another's batch by posting its root first.
///      The number of tokens a batch covers is not recorded: it would be self-reported, and nothing
///      may be credited for it (trust credit comes from audits and paid channels only).
interface ICommitments {
    struct Batch {
        /// @dev Server that posted the batch.
        address server;
        /// @dev Number of receipts under the root.
        uint32 receiptCount;
        /// @dev The server's registration the work was done under (see `IStaking.registration`).
        uint64 registrationId;
        /// @dev Earliest receipt time covered (unix seconds).
        uint64 fromTime;
        /// @dev Latest receipt time covered (unix seconds).
        uint64 toTime;
        /// @dev Timestamp of the block the batch was posted in.
        uint64 postedAt;
        /// @dev Last second at which a receipt of this batch can be challenged (postedAt + window then).
        uint64 challengeDeadline;
        /// @dev Block in which the batch was posted: audit samples use randomness from after it.
        uint64 postedBlock;
        /// @dev Layer range of the registration (receipts must match it).
        uint16 firstLayer;
        uint16 lastLayer;
        /// @dev The server's bonded stake free of locks when it posted (saturated to 2^128-1).
        uint128 stake;
        /// @dev Merkle root of the receipt leaves.
        bytes32 root;
    }

    /// @notice Only a registered server may post.
    error CommitmentsNotRegistered(address account);
    /// @notice `account` is not registered for `variant` layers [firstLayer, lastLayer) right now.
    error CommitmentsNotRegisteredFor(address account, VariantId variant, uint16 firstLayer, uint16 lastLayer);
    /// @notice The root must not be zero.
    error CommitmentsZeroRoot();
    /// @notice A batch must hold at least one receipt.
    error CommitmentsEmptyBatch();
    /// @notice The time range must satisfy previousTo <= from <= to <= now.
    error CommitmentsBadTimeRange(uint64 fromTime, uint64 toTime, uint64 previousTo, uint64 nowTs);
    /// @notice `server` already posted this root.
    error CommitmentsDuplicateRoot(address server, bytes32 root);
    /// @notice No batch has this id.
    error CommitmentsUnknownBatch(uint256 batchId);

    /// @notice Emitted once per posted batch.
    event BatchPosted(
        uint256 indexed batchId,
        address indexed server,
        uint64 indexed registrationId,
        bytes32 root,
        uint32 receiptCount,
        uint64 fromTime,
        uint64 toTime,
        uint64 challengeDeadline
    );

    /// @notice Posts a batch of the caller's receipts, all for `variant` layers [firstLayer, lastLayer),
    ///         which must be the caller's current registration. Returns its id (0, 1, 2, … in posting order).
    function postBatch(
        bytes32 root,
        VariantId variant,
        uint16 firstLayer,
        uint16 lastLayer,
        uint32 receiptCount,
        uint64 fromTime,
        uint64 toTime
    ) external returns (uint256 batchId);

    function batch(uint256 batchId) external view returns (Batch memory);

    /// @notice The model variant of `batchId` (from its registration record).
    function batchVariant(uint256 batchId) external view returns (VariantId);

    function batchCount() external view returns (uint256);

    function serverBatchCount(address server) external view returns (uint256);

    /// @notice Batch ids of `server`, `limit` of them from `offset`.
    function serverBatchIds(address server, uint256 offset, uint256 limit) external view returns (uint256[] memory);

    /// @notice The receipt's Merkle leaf (its EIP-712 struct hash).
    function receiptLeaf(ReceiptLib.Receipt calldata receipt) external pure returns (bytes32);

    /// @notice The head of a receipt chain whose head was `head` after appending the receipt leaf `leaf`:
    ///         keccak256(head ‖ leaf). A session's chain starts at bytes32(0) (see `ReceiptLib.ReceiptChain`).
    function receiptChainNext(bytes32 head, bytes32 leaf) external pure returns (bytes32);

    /// @notice The EIP-712 digest a server signs off chain for `chain` (this contract is the verifying
    ///         contract, in the domain its receipts are hashed for). Not evidence on chain: a receipt is
    ///         evidence once it is under a batch root its server posted (`verifyReceipt`).
    function receiptChainDigest(ReceiptLib.ReceiptChain calldata chain) external view returns (bytes32);

    /// @notice The address that signed `chain`; reverts on a malformed or malleable signature.
    function receiptChainSigner(
        ReceiptLib.ReceiptChain calldata chain,
        bytes calldata signature
    ) external view returns (address);

    /// @notice True when `receipt` is under `batchId`'s root and matches the batch: same server, the
    ///         variant and layer range of the registration it was posted under.
    function verifyReceipt(
        uint256 batchId,
        ReceiptLib.Receipt calldata receipt,
        bytes32[] calldata proof
    ) external view returns (bool);
}
