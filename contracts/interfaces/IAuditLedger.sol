// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Audit ledger: passed audits on chain, their reward, and the price of a false pass
/// @notice A registered verifier records, in one transaction per batch, the receipts of that batch it
///         re-executed and found correct (their leaves, each with its Merkle proof under the batch's
///         root). Anyone sees in `PassesRecorded` which receipts were audited and by whom.
///
///         - Only sampled receipts count: leaf `l` of a batch posted in block b is sampled iff
///           uint256(keccak256(abi.encode(blockhash(b + 1), l))) < 2²⁵⁶ · sampleRatePpb / 10⁹, the
///           rule of node/verifier/sample.ts, checked here. The server could not know the sample when
///           it posted the root; a verifier cannot pick which of a friend's receipts it vouches for.
///         - Trust: the batch's server gets `recordPassedAudits` credit for the largest number of
///           passes any one verifier recorded for the batch (not the sum): more friends vouching for
///           the same batch add nothing, and the credit per batch never exceeds its sample.
///         - Reward: `rewardPerAudit` per pass, to each verifier that recorded it, from the verifier
///           reward pool, while the server's audit budget lasts: rewards for auditing a server never
///           exceed `rewardBudgetBps` of what its clients paid it (TrustScores' paidWork). With the
///           budget at most the channel fee, a server that pays itself to unlock rewards for a friend
///           pays at least as much in fees as the friend earns.
///         - Lazy verifier: a pass is a claim anyone can check. When a dispute of a passed receipt
///           settles with the server at fault, anyone may call `slashFalsePass`: the verifier loses
///           `falsePassPenalty` of its stake (what is free of it), `exposerShareBps` of it to that
///           dispute's challenger, the rest to the pool. Passes are accepted only in the first half of
///           the batch's challenge window and never for a receipt already disputed, so at least half
///           the window remains in which any verifier can dispute (and so expose) a false pass; a
///           recording verifier's stake stays slashable until every such dispute can have settled.
/// @dev Holds AUDITOR_ROLE in TrustScores, REWARDER_ROLE in VerifierRewards, SLASHER_ROLE and
///      COMMITMENTS_ROLE in Staking (the latter only to extend how long a verifier's stake stays
///      slashable). The sample seed of a batch is read once and kept (`anchorSeed`), since
///      `blockhash` forgets blocks older than 256.
interface IAuditLedger {
    struct Params {
        /// @dev On-chain sample rate, parts per 10⁹ (1..10⁹): only leaves sampled at this rate count.
        uint32 sampleRatePpb;
        /// @dev Rewards for auditing a server never exceed this share of its paid work, basis points.
        uint16 rewardBudgetBps;
        /// @dev Share of a false pass's penalty paid to the challenger that exposed it, basis points.
        uint16 exposerShareBps;
        /// @dev Paid per recorded pass, token base units.
        uint128 rewardPerAudit;
        /// @dev Stake a verifier loses per pass shown false, token base units.
        uint128 falsePassPenalty;
    }

    struct PassRecord {
        /// @dev keccak256(abi.encodePacked(leaves)) of the recorded leaves, in ascending order.
        bytes32 leavesHash;
        /// @dev Number of leaves recorded (0: no record).
        uint32 count;
        /// @dev Reward allocated for them.
        uint128 reward;
    }

    /// @notice Only a registered verifier whose bonded stake covers the minimum may record passes.
    error AuditLedgerNotVerifier(address account);
    /// @notice Passes of batch `batchId` could be recorded until `deadline`; it is `nowTs`.
    error AuditLedgerRecordClosed(uint256 batchId, uint64 deadline, uint64 nowTs);
    /// @notice `verifier` already recorded its passes of batch `batchId` (one record per batch).
    error AuditLedgerAlreadyRecorded(uint256 batchId, address verifier);
    /// @notice A record holds 1..`maxLeaves` leaves with one proof each; got `leaves` leaves, `proofs` proofs.
    error AuditLedgerBadLeafCount(uint256 leaves, uint256 proofs, uint256 maxLeaves);
    /// @notice Leaves must be strictly ascending (no duplicates); the one at `index` is not.
    error AuditLedgerLeavesNotAscending(uint256 index);
    /// @notice `leaf` is not sampled at the on-chain rate under batch `batchId`'s seed.
    error AuditLedgerNotSampled(uint256 batchId, bytes32 leaf);
    /// @notice `leaf` is already the subject of dispute `disputeId`: no pass can be recorded for it.
    error AuditLedgerLeafDisputed(bytes32 leaf, uint256 disputeId);
    /// @notice The hash of block `seedBlock` (batch `batchId`'s seed) is not available: not mined yet,
    ///         or over 256 blocks old and never anchored.
    error AuditLedgerSeedUnavailable(uint256 batchId, uint256 seedBlock);
    /// @notice `verifier` recorded no passes of batch `batchId`.
    error AuditLedgerNoRecord(uint256 batchId, address verifier);
    /// @notice The leaves given are not the ones `verifier` recorded for batch `batchId`.
    error AuditLedgerLeavesMismatch(uint256 batchId, address verifier);
    /// @notice Index `index` is outside the `count` recorded leaves.
    error AuditLedgerBadIndex(uint256 index, uint256 count);
    /// @notice The pass of `leaf` is not shown false: its dispute `disputeId` (0: none) did not settle
    ///         with the server at fault.
    error AuditLedgerPassNotFalse(bytes32 leaf, uint256 disputeId);
    /// @notice `verifier`'s pass of `leaf` was already slashed.
    error AuditLedgerAlreadySlashed(address verifier, bytes32 leaf);
    /// @notice Inconsistent parameters: sample rate 1..10⁹ ppb, shares at most 10⁴ bps.
    error AuditLedgerBadParams(Params params);

    /// @notice `verifier` audited and passed `leaves` of `server`'s batch `batchId`; the server gained
    ///         `credited` passed audits and the verifier `reward`.
    event PassesRecorded(
        uint256 indexed batchId,
        address indexed verifier,
        address indexed server,
        bytes32[] leaves,
        uint256 credited,
        uint256 reward
    );
    /// @notice Batch `batchId`'s sample seed (the hash of the block after it was posted) is kept.
    event SeedAnchored(uint256 indexed batchId, bytes32 seed);
    /// @notice `verifier`'s pass of `leaf` was shown false by dispute `disputeId`: it lost `penalty`,
    ///         `toChallenger` of it to the dispute's challenger.
    event FalsePassSlashed(
        uint256 indexed batchId,
        address indexed verifier,
        bytes32 leaf,
        uint256 disputeId,
        uint256 penalty,
        uint256 toChallenger
    );
    event ParamsSet(Params params);

    /// @notice Records the caller's passes of batch `batchId`: `leaves` strictly ascending, each
    ///         sampled, under the batch's root by `proofs[i]`, not disputed; inside the first half of
    ///         the batch's challenge window; once per verifier and batch. Credits the server's trust
    ///         and allocates the caller's reward (see the contract notice).
    function recordPasses(uint256 batchId, bytes32[] calldata leaves, bytes32[][] calldata proofs) external;

    /// @notice Slashes `verifier` for its recorded pass of `leaves[index]` (`leaves`: its whole record
    ///         of batch `batchId`, as in `PassesRecorded`) once that receipt's dispute settled with
    ///         the server at fault. Anyone may call; once per verifier and leaf.
    function slashFalsePass(uint256 batchId, address verifier, bytes32[] calldata leaves, uint256 index) external;

    /// @notice Reads and keeps batch `batchId`'s sample seed; returns it. Anyone may call (a verifier
    ///         whose audit may take longer than 256 blocks anchors first).
    function anchorSeed(uint256 batchId) external returns (bytes32 seed);

    /// @notice Sets the parameters. Only GOVERNANCE_ROLE.
    function setParams(Params calldata params) external;

    /// @notice Whether `leaf` counts as sampled in batch `batchId` (reverts while the seed is unavailable).
    function isSampled(uint256 batchId, bytes32 leaf) external view returns (bool);

    /// @notice The record of `verifier`'s passes of batch `batchId` (count 0: none).
    function passRecord(uint256 batchId, address verifier) external view returns (PassRecord memory);

    /// @notice Passes credited to the batch's server so far (the largest record of the batch).
    function creditedOf(uint256 batchId) external view returns (uint256);

    /// @notice What may still be paid for auditing `server`: rewardBudgetBps of its paid work minus
    ///         what was paid.
    function rewardBudgetLeft(address server) external view returns (uint256);

    /// @notice Whether `verifier`'s pass of `leaf` was slashed.
    function falsePassSlashed(address verifier, bytes32 leaf) external view returns (bool);

    function params() external view returns (Params memory);
}
