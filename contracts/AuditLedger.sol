// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IAuditLedger} from "./interfaces/IAuditLedger.sol";
import {ICommitments} from "./interfaces/ICommitments.sol";
import {IDisputes} from "./interfaces/IDisputes.sol";
import {IStaking} from "./interfaces/IStaking.sol";
import {ITrustScores} from "./interfaces/ITrustScores.sol";
import {IVerifierRewards} from "./interfaces/IVerifierRewards.sol";
import {ReceiptLib} from "./libraries/ReceiptLib.sol";

/// @title Audit ledger
/// @notice See {IAuditLedger}.
contract AuditLedger is IAuditLedger, AccessControl {
    /// @notice Role allowed to change the parameters.
    bytes32 public constant GOVERNANCE_ROLE = keccak256("GOVERNANCE_ROLE");
    /// @notice Most leaves in one record: bounds its loop (a sample of a batch is small).
    uint256 public constant MAX_LEAVES = 256;
    uint256 private constant BPS = 10_000;
    uint256 private constant PPB = 1_000_000_000;

    IStaking public immutable staking;
    ICommitments public immutable commitments;
    IDisputes public immutable disputes;
    ITrustScores public immutable trust;
    IVerifierRewards public immutable rewards;

    Params private _params;
    mapping(uint256 batchId => bytes32) private _seeds;
    mapping(uint256 batchId => mapping(address verifier => PassRecord)) private _records;
    mapping(uint256 batchId => uint256) private _credited;
    mapping(address server => uint256) private _rewarded;
    mapping(address verifier => mapping(bytes32 leaf => bool)) private _slashed;

    constructor(
        address admin,
        IStaking staking_,
        ICommitments commitments_,
        IDisputes disputes_,
        ITrustScores trust_,
        IVerifierRewards rewards_,
        Params memory params_
    ) {
        staking = staking_;
        commitments = commitments_;
        disputes = disputes_;
        trust = trust_;
        rewards = rewards_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(GOVERNANCE_ROLE, admin);
        _setParams(params_);
    }

    /// @inheritdoc IAuditLedger
    function recordPasses(uint256 batchId, bytes32[] calldata leaves, bytes32[][] calldata proofs) external {
        if (!staking.isActiveVerifier(msg.sender)) revert AuditLedgerNotVerifier(msg.sender);
        ICommitments.Batch memory b = commitments.batch(batchId);
        // First half of the window: the other half remains for a dispute that exposes a false pass.
        uint64 deadline = b.postedAt + (b.challengeDeadline - b.postedAt) / 2;
        if (block.timestamp > deadline) revert AuditLedgerRecordClosed(batchId, deadline, uint64(block.timestamp));
        PassRecord storage record = _records[batchId][msg.sender];
        if (record.count != 0) revert AuditLedgerAlreadyRecorded(batchId, msg.sender);
        uint256 count = leaves.length;
        if (count == 0 || count > MAX_LEAVES || proofs.length != count) {
            revert AuditLedgerBadLeafCount(count, proofs.length, MAX_LEAVES);
        }
        _checkLeaves(batchId, b.root, leaves, proofs);

        uint256 credited = _credited[batchId];
        credited = count > credited ? count - credited : 0;
        if (credited != 0) _credited[batchId] = count;
        uint256 reward = _reward(b.server, count);
        record.leavesHash = keccak256(abi.encodePacked(leaves));
        record.count = uint32(count); // count <= MAX_LEAVES
        record.reward = uint128(reward); // reward <= the server's budget <= its paidWork, a uint128
        emit PassesRecorded(batchId, msg.sender, b.server, leaves, credited, reward);

        // credited <= MAX_LEAVES fits in uint64
        if (credited != 0) trust.recordPassedAudits(b.server, uint64(credited));
        if (reward != 0) rewards.allocate(msg.sender, reward);
        // The recorder's stake stays slashable until a dispute opened by the batch's deadline can have settled.
        staking.noteCommitment(msg.sender, b.challengeDeadline + staking.timing().maxDisputeDuration);
    }

    /// @inheritdoc IAuditLedger
    function slashFalsePass(uint256 batchId, address verifier, bytes32[] calldata leaves, uint256 index) external {
        PassRecord storage record = _records[batchId][verifier];
        if (record.count == 0) revert AuditLedgerNoRecord(batchId, verifier);
        if (keccak256(abi.encodePacked(leaves)) != record.leavesHash) revert AuditLedgerLeavesMismatch(batchId, verifier);
        if (index >= leaves.length) revert AuditLedgerBadIndex(index, leaves.length);
        bytes32 leaf = leaves[index];
        uint256 disputeId = disputes.disputeOfReceipt(leaf);
        if (disputeId == 0) revert AuditLedgerPassNotFalse(leaf, 0);
        IDisputes.Dispute memory d = disputes.dispute(disputeId);
        if (d.outcome != IDisputes.Outcome.ServerAtFault) revert AuditLedgerPassNotFalse(leaf, disputeId);
        if (_slashed[verifier][leaf]) revert AuditLedgerAlreadySlashed(verifier, leaf);
        _slashed[verifier][leaf] = true;

        Params storage p = _params;
        IStaking.Operator memory op = staking.operator(verifier);
        uint256 penalty = op.bonded + op.unbonding - op.locked; // Staking keeps locked <= bonded + unbonding
        if (penalty > p.falsePassPenalty) penalty = p.falsePassPenalty;
        uint256 toChallenger = (penalty * p.exposerShareBps) / BPS;
        emit FalsePassSlashed(batchId, verifier, leaf, disputeId, penalty, toChallenger);
        if (penalty == 0) return;
        bytes32 lockId = keccak256(abi.encode("false pass", verifier, leaf));
        staking.lock(verifier, lockId, penalty);
        if (toChallenger != 0) staking.slash(lockId, toChallenger, d.challenger);
        if (penalty != toChallenger) staking.slash(lockId, penalty - toChallenger, address(rewards));
        staking.unlock(lockId);
    }

    /// @inheritdoc IAuditLedger
    function anchorSeed(uint256 batchId) public returns (bytes32 seed) {
        seed = _seeds[batchId];
        if (seed != bytes32(0)) return seed;
        seed = _seedOf(batchId);
        _seeds[batchId] = seed;
        emit SeedAnchored(batchId, seed);
    }

    /// @inheritdoc IAuditLedger
    function setParams(Params calldata params_) external onlyRole(GOVERNANCE_ROLE) {
        _setParams(params_);
    }

    /// @inheritdoc IAuditLedger
    function isSampled(uint256 batchId, bytes32 leaf) external view returns (bool) {
        return _sampled(_seedOf(batchId), leaf, _params.sampleRatePpb);
    }

    /// @inheritdoc IAuditLedger
    function passRecord(uint256 batchId, address verifier) external view returns (PassRecord memory) {
        return _records[batchId][verifier];
    }

    /// @inheritdoc IAuditLedger
    function creditedOf(uint256 batchId) external view returns (uint256) {
        return _credited[batchId];
    }

    /// @inheritdoc IAuditLedger
    function rewardBudgetLeft(address server) public view returns (uint256) {
        uint256 budget = (uint256(trust.record(server).paidWork) * _params.rewardBudgetBps) / BPS;
        uint256 paid = _rewarded[server];
        return budget > paid ? budget - paid : 0;
    }

    /// @inheritdoc IAuditLedger
    function falsePassSlashed(address verifier, bytes32 leaf) external view returns (bool) {
        return _slashed[verifier][leaf];
    }

    /// @inheritdoc IAuditLedger
    function params() external view returns (Params memory) {
        return _params;
    }

    /// @dev Batch `batchId`'s sample seed: the kept one, else the hash of the block after the batch's.
    function _seedOf(uint256 batchId) private view returns (bytes32 seed) {
        seed = _seeds[batchId];
        if (seed != bytes32(0)) return seed;
        uint256 seedBlock = uint256(commitments.batch(batchId).postedBlock) + 1;
        if (block.number > seedBlock) seed = blockhash(seedBlock);
        if (seed == bytes32(0)) revert AuditLedgerSeedUnavailable(batchId, seedBlock);
    }

    /// @dev Each leaf: strictly above the previous one, under the root, sampled, not disputed.
    function _checkLeaves(
        uint256 batchId,
        bytes32 root,
        bytes32[] calldata leaves,
        bytes32[][] calldata proofs
    ) private {
        bytes32 seed = anchorSeed(batchId);
        uint32 rate = _params.sampleRatePpb;
        bytes32 previous;
        for (uint256 i = 0; i < leaves.length; ++i) {
            bytes32 leaf = leaves[i];
            if (i != 0 && leaf <= previous) revert AuditLedgerLeavesNotAscending(i);
            previous = leaf;
            ReceiptLib.checkLeaf(batchId, root, leaf, proofs[i]);
            if (!_sampled(seed, leaf, rate)) revert AuditLedgerNotSampled(batchId, leaf);
            uint256 disputeId = disputes.disputeOfReceipt(leaf);
            if (disputeId != 0) revert AuditLedgerLeafDisputed(leaf, disputeId);
        }
    }

    /// @dev `count` passes' reward, capped by the server's budget and the pool; recorded as paid.
    function _reward(address server, uint256 count) private returns (uint256 reward) {
        reward = count * _params.rewardPerAudit;
        uint256 left = rewardBudgetLeft(server);
        if (reward > left) reward = left;
        uint256 available = rewards.unallocated();
        if (reward > available) reward = available;
        if (reward != 0) _rewarded[server] += reward;
    }

    /// @dev The rule of node/verifier/sample.ts: keccak256(abi.encode(seed, leaf)) < 2²⁵⁶ · rate / 10⁹.
    function _sampled(bytes32 seed, bytes32 leaf, uint32 ratePpb) private pure returns (bool) {
        uint256 draw = uint256(keccak256(abi.encode(seed, leaf)));
        if (ratePpb == PPB) return true; // the threshold 2²⁵⁶ does not fit: every draw is below it
        return draw < _threshold(ratePpb);
    }

    /// @dev floor(2²⁵⁶ · ratePpb / 10⁹) for ratePpb < 10⁹, exactly as sample.ts computes it.
    function _threshold(uint32 ratePpb) private pure returns (uint256) {
        // 2²⁵⁶ = q·10⁹ + r with q = floor((2²⁵⁶-1) / 10⁹) and r = ((2²⁵⁶-1) mod 10⁹) + 1 (here r < 10⁹).
        uint256 q = type(uint256).max / PPB;
        uint256 r = (type(uint256).max % PPB) + 1;
        // q·rate < 2²⁵⁶ since rate < 10⁹; r·rate < 10¹⁸: no overflow.
        return q * ratePpb + (r * ratePpb) / PPB;
    }

    function _setParams(Params memory p) private {
        if (p.sampleRatePpb == 0 || p.sampleRatePpb > PPB || p.rewardBudgetBps > BPS || p.exposerShareBps > BPS) {
            revert AuditLedgerBadParams(p);
        }
        _params = p;
        emit ParamsSet(p);
    }
}
