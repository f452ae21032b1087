// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ICommitments} from "./interfaces/ICommitments.sol";
import {IStaking} from "./interfaces/IStaking.sol";
import {ReceiptLib} from "./libraries/ReceiptLib.sol";

/// @title Commitments
/// @notice See {ICommitments}.
contract Commitments is ICommitments, EIP712 {
    using ReceiptLib for ReceiptLib.Receipt;

    IStaking public immutable staking;

    Batch[] private _batches;
    mapping(address server => uint256[]) private _serverBatches;
    mapping(bytes32 root => bool) private _rootPosted;

    constructor(IStaking staking_) EIP712("eFed Receipts", "1") {
        staking = staking_;
    }

    /// @inheritdoc ICommitments
    function postBatch(
        bytes32 root,
        uint32 receiptCount,
        uint64 tokensServed,
        uint64 fromTime,
        uint64 toTime
    ) external returns (uint256 batchId) {
        if (!staking.isActiveServer(msg.sender)) revert CommitmentsNotActiveServer(msg.sender);
        if (root == bytes32(0)) revert CommitmentsZeroRoot();
        if (receiptCount == 0) revert CommitmentsEmptyBatch();
        if (tokensServed < receiptCount) revert CommitmentsTokensBelowReceipts(tokensServed, receiptCount);
        uint256[] storage mine = _serverBatches[msg.sender];
        uint64 previousTo = mine.length == 0 ? 0 : _batches[mine[mine.length - 1]].toTime;
        if (fromTime < previousTo || fromTime > toTime || toTime > block.timestamp) {
            revert CommitmentsBadTimeRange(fromTime, toTime, previousTo, uint64(block.timestamp));
        }
        if (_rootPosted[root]) revert CommitmentsDuplicateRoot(root);

        batchId = _batches.length;
        _batches.push(
            Batch({
                server: msg.sender,
                receiptCount: receiptCount,
                tokensServed: tokensServed,
                fromTime: fromTime,
                toTime: toTime,
                postedBlock: uint64(block.number),
                postedAt: uint64(block.timestamp),
                root: root
            })
        );
        mine.push(batchId);
        _rootPosted[root] = true;
        emit BatchPosted(batchId, msg.sender, root, receiptCount, tokensServed, fromTime, toTime);
    }

    /// @inheritdoc ICommitments
    function batch(uint256 batchId) public view returns (Batch memory) {
        if (batchId >= _batches.length) revert CommitmentsUnknownBatch(batchId);
        return _batches[batchId];
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
    function receiptDigest(ReceiptLib.Receipt calldata receipt) public view returns (bytes32) {
        return _hashTypedDataV4(receipt.hash());
    }

    /// @inheritdoc ICommitments
    function receiptSigner(ReceiptLib.Receipt calldata receipt, bytes calldata signature) external view returns (address) {
        return ECDSA.recover(receiptDigest(receipt), signature);
    }

    /// @inheritdoc ICommitments
    function verifyReceipt(
        uint256 batchId,
        ReceiptLib.Receipt calldata receipt,
        bytes32[] calldata proof
    ) external view returns (bool) {
        Batch memory b = batch(batchId);
        return receipt.server == b.server && MerkleProof.verifyCalldata(proof, b.root, receipt.hash());
    }
}
