// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ICommitments} from "./interfaces/ICommitments.sol";
import {VariantId} from "./interfaces/IModelRegistry.sol";
import {IStaking} from "./interfaces/IStaking.sol";
import {ReceiptLib} from "./libraries/ReceiptLib.sol";

/// @title Commitments
/// @notice See {ICommitments}. Holds IStaking's COMMITMENTS_ROLE: each batch extends how long the
///         server's stake stays slashable to the batch's challenge deadline.
contract Commitments is ICommitments, EIP712 {
    using ReceiptLib for ReceiptLib.Receipt;

    IStaking public immutable staking;

    Batch[] private _batches;
    mapping(address server => uint256[]) private _serverBatches;
    mapping(address server => mapping(bytes32 root => bool)) private _rootPosted;

    constructor(IStaking staking_) EIP712("eFed Receipts", "1") {
        staking = staking_;
    }

    /// @inheritdoc ICommitments
    function postBatch(
        bytes32 root,
        VariantId variant,
        uint16 firstLayer,
        uint16 lastLayer,
        uint32 receiptCount,
        uint64 fromTime,
        uint64 toTime
    ) external returns (uint256 batchId) {
        uint64 registrationId = _checkRegistration(variant, firstLayer, lastLayer);
        _checkBatch(root, receiptCount, fromTime, toTime);

        uint64 deadline = uint64(block.timestamp) + staking.timing().challengeWindow;
        uint256 stake = staking.freeBonded(msg.sender);
        batchId = _batches.length;
        Batch storage b = _batches.push();
        b.server = msg.sender;
        b.receiptCount = receiptCount;
        b.registrationId = registrationId;
        b.fromTime = fromTime;
        b.toTime = toTime;
        b.postedAt = uint64(block.timestamp);
        b.challengeDeadline = deadline;
        b.postedBlock = uint64(block.number);
        b.firstLayer = firstLayer;
        b.lastLayer = lastLayer;
        b.stake = stake > type(uint128).max ? type(uint128).max : uint128(stake);
        b.root = root;
        _serverBatches[msg.sender].push(batchId);
        _rootPosted[msg.sender][root] = true;
        emit BatchPosted(batchId, msg.sender, registrationId, root, receiptCount, fromTime, toTime, deadline);
        staking.noteCommitment(msg.sender, deadline);
    }

    /// @inheritdoc ICommitments
    function batch(uint256 batchId) public view returns (Batch memory) {
        if (batchId >= _batches.length) revert CommitmentsUnknownBatch(batchId);
        return _batches[batchId];
    }

    /// @inheritdoc ICommitments
    function batchVariant(uint256 batchId) public view returns (VariantId) {
        return staking.registration(batch(batchId).registrationId).variant;
    }

    /// @inheritdoc ICommitments
    function batchCount() external view returns (uint256) {
        return _batches.length;
    }

    /// @inheritdoc ICommitments
    function serverBatchCount(address server) external view returns (uint256) {
        return _serverBatches[server].length;
    }

    /// @inheritdoc ICommitments
    function serverBatchIds(address server, uint256 offset, uint256 limit) external view returns (uint256[] memory page) {
        uint256[] storage ids = _serverBatches[server];
        uint256 total = ids.length;
        if (offset >= total) return new uint256[](0);
        uint256 end = total - offset < limit ? total : offset + limit;
        page = new uint256[](end - offset);
        for (uint256 i = offset; i < end; ++i) {
            page[i - offset] = ids[i];
        }
    }

    /// @inheritdoc ICommitments
    function receiptLeaf(ReceiptLib.Receipt calldata receipt) external pure returns (bytes32) {
        return receipt.hash();
    }

    /// @inheritdoc ICommitments
    function receiptChainNext(bytes32 head, bytes32 leaf) external pure returns (bytes32) {
        return ReceiptLib.chainNext(head, leaf);
    }

    /// @inheritdoc ICommitments
    function receiptChainDigest(ReceiptLib.ReceiptChain calldata chain) public view returns (bytes32) {
        return _hashTypedDataV4(ReceiptLib.hashChain(chain));
    }

    /// @inheritdoc ICommitments
    function receiptChainSigner(
        ReceiptLib.ReceiptChain calldata chain,
        bytes calldata signature
    ) external view returns (address) {
        return ECDSA.recover(receiptChainDigest(chain), signature);
    }

    /// @inheritdoc ICommitments
    function verifyReceipt(
        uint256 batchId,
        ReceiptLib.Receipt calldata receipt,
        bytes32[] calldata proof
    ) external view returns (bool) {
        Batch storage b = _batches[_known(batchId)];
        if (receipt.server != b.server || receipt.firstLayer != b.firstLayer || receipt.lastLayer != b.lastLayer) {
            return false;
        }
        if (receipt.variantId != VariantId.unwrap(staking.registration(b.registrationId).variant)) return false;
        return MerkleProof.verifyCalldata(proof, b.root, receipt.hash());
    }

    /// @dev The caller's registration id, which must be for exactly this work.
    function _checkRegistration(VariantId variant, uint16 firstLayer, uint16 lastLayer) private view returns (uint64) {
        (uint64 id, VariantId registered, uint16 first, uint16 last) = staking.serverRegistration(msg.sender);
        if (id == 0) revert CommitmentsNotRegistered(msg.sender);
        if (VariantId.unwrap(registered) != VariantId.unwrap(variant) || first != firstLayer || last != lastLayer) {
            revert CommitmentsNotRegisteredFor(msg.sender, variant, firstLayer, lastLayer);
        }
        return id;
    }

    /// @dev Root, count and time range of a new batch of the caller.
    function _checkBatch(bytes32 root, uint32 receiptCount, uint64 fromTime, uint64 toTime) private view {
        if (root == bytes32(0)) revert CommitmentsZeroRoot();
        if (receiptCount == 0) revert CommitmentsEmptyBatch();
        uint256[] storage mine = _serverBatches[msg.sender];
        uint64 previousTo = mine.length == 0 ? 0 : _batches[mine[mine.length - 1]].toTime;
        if (fromTime < previousTo || fromTime > toTime || toTime > block.timestamp) {
            revert CommitmentsBadTimeRange(fromTime, toTime, previousTo, uint64(block.timestamp));
        }
        if (_rootPosted[msg.sender][root]) revert CommitmentsDuplicateRoot(msg.sender, root);
    }

    function _known(uint256 batchId) private view returns (uint256) {
        if (batchId >= _batches.length) revert CommitmentsUnknownBatch(batchId);
        return batchId;
    }
}
