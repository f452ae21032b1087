// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReceiptLib} from "../libraries/ReceiptLib.sol";
import {IDataRequests} from "./IDataRequests.sol";

/// @title Disputes (settling v1: a committee of staked verifiers)
/// @notice A registered verifier challenges one committed receipt it found wrong (or whose data the
///         server withheld) by posting a bond inside the batch's challenge window. The server's free
///         stake behind it (up to `serverSlash`) is locked under this dispute alone; a challenge is
///         never refused because other disputes hold the stake (that would let a friend of a cheating
///         server shield its batch with frivolous disputes): it then locks what is free, and at an
///         "at fault" settlement takes what has become free since, up to `serverSlash`. One block later anyone draws a committee of
///         staked verifiers at random (never the challenger); each member commits a hidden vote
///         (keccak256(abi.encode(disputeId, voter, serverAtFault, salt))), then reveals it. After the
///         reveal deadline anyone settles:
///
///         - a strict majority of the committee says "at fault": the locked stake is slashed, part to
///           the challenger, the rest to the verifier reward pool; the bond is returned; the server's
///           trust records a failed audit;
///         - a strict majority says "correct": the challenger's bond goes to the reward pool, except
///           its lock-proportional part (`lockBondBps` of the stake locked), which compensates the
///           server for the time its stake was locked; the server's trust records a passed audit;
///         - otherwise (no quorum): the bond is returned, nothing is slashed, trust does not move.
///
///         Members who did not reveal the majority vote (or any vote) lose `voterPenalty` of their
///         stake, locked when they were drawn; members with the majority get `voterReward` from the
///         pool while it lasts. Every lock is released at settlement.
/// @dev Deadlines are fixed when the dispute opens, commit + reveal never exceeds Staking's
///      `maxDisputeDuration`, withdrawals wait for every batch's challenge deadline, and each dispute
///      extends that wait to its opening + `maxDisputeDuration` (through `noteCommitment`), so stake
///      that backs a challengeable receipt stays there until the dispute can have settled. One dispute
///      per receipt, ever: a receipt cannot be slashed twice. This contract holds SLASHER_ROLE and
///      COMMITMENTS_ROLE in Staking, AUDITOR_ROLE in TrustScores and REWARDER_ROLE in VerifierRewards.
///
///      Why v1 is safe, and under which assumptions:
///      - Honest majority of drawn seats. Seats are drawn uniformly over registered verifier
///        addresses, each of which must hold `verifierMinStake` free of locks; an attacker holding a
///        fraction f < 1/2 of the seats' stake wins a committee of size c with probability
///        Σ_{k > c/2} C(c,k) f^k (1-f)^(c-k) (c = 3, f = 0.2: 10.4%; c = 7: 3.3%; c = 15: 0.4%).
///        Staking more than the minimum buys no extra seat.
///      - No copying: votes are committed before any is revealed (commit-reveal), and a member that
///        does not reveal, or reveals against the majority, loses `voterPenalty`; so voting without
///        re-executing earns nothing in expectation unless the lazy vote is the majority anyway.
///      - The draw is unknown when the dispute opens: the seed is the hash of the block after the
///        opening block. The producer of that block can withhold it to re-roll the committee, at the
///        cost of its block reward; a rollup sequencer that orders blocks can bias it. Not safe
///        against a colluding block producer (a later version draws from a VRF or a RANDAO reveal
///        further ahead).
///      - The challenger cannot sit on its own dispute; the server cannot sit because the server and
///        verifier roles are exclusive per address (one operator with two addresses is a colluder,
///        covered by the honest-majority assumption).
///      - Griefing: a challenger risks `bondFor(params, locked)` per dispute and a server's stake is
///        locked only up to `serverSlash` per dispute, at most once per receipt; the lock-proportional
///        part of a lost bond goes to the server whose stake (and eligibility) it held.
interface IDisputes {
    enum Status {
        None,
        /// @dev Opened; the committee is not drawn yet.
        Open,
        /// @dev Committee drawn; votes are committed then revealed.
        Voting,
        Settled
    }

    enum Outcome {
        None,
        ServerAtFault,
        ServerCorrect,
        NoQuorum
    }

    struct Params {
        /// @dev What the challenger puts up, token base units.
        uint128 challengeBond;
        /// @dev Server stake locked (and slashed if at fault) per dispute; less if less is free.
        uint128 serverSlash;
        /// @dev Stake each committee member risks on its vote.
        uint128 voterPenalty;
        /// @dev Paid to each member who voted with the majority, from the reward pool while it lasts.
        uint128 voterReward;
        /// @dev Share of the slashed stake paid to the challenger, basis points (the rest: reward pool).
        uint16 challengerShareBps;
        /// @dev Bond added per unit of server stake the dispute locks, basis points (at most 10⁴): paid
        ///      to the server if it is found correct, for the time its stake was locked.
        uint16 lockBondBps;
        /// @dev Members drawn per dispute: odd, 1..MAX_COMMITTEE.
        uint8 committeeSize;
        /// @dev Seconds from opening to the end of the commit phase.
        uint32 commitPeriod;
        /// @dev Seconds from the end of the commit phase to the end of the reveal phase.
        uint32 revealPeriod;
    }

    struct Dispute {
        address challenger;
        address server;
        uint256 batchId;
        /// @dev The disputed receipt's leaf (its EIP-712 struct hash).
        bytes32 receiptLeaf;
        uint128 bond;
        /// @dev Server stake locked for this dispute.
        uint128 serverLocked;
        uint64 openedAt;
        /// @dev The committee seed is this block's hash: unknown when the dispute opens.
        uint64 drawBlock;
        uint64 commitDeadline;
        uint64 revealDeadline;
        Status status;
        Outcome outcome;
        uint8 faultVotes;
        uint8 correctVotes;
    }

    struct Vote {
        bytes32 commitment;
        /// @dev True for a drawn committee member.
        bool member;
        bool revealed;
        bool serverAtFault;
        /// @dev The member's stake locked on its vote.
        uint128 locked;
    }

    /// @notice Only a registered verifier whose bonded stake covers the minimum may challenge.
    error DisputesNotVerifier(address account);
    /// @notice The receipt `leaf` is already the subject of dispute `disputeId`.
    error DisputesReceiptAlreadyDisputed(bytes32 leaf, uint256 disputeId);
    /// @notice The step of receipt `leaf` was already slashed as withheld, by data request `requestId`:
    ///         one step is punished once.
    error DisputesReceiptSlashedAsWithheld(bytes32 leaf, uint256 requestId);
    /// @notice No DataRequests contract is set yet ({setDataRequests}): a dispute could punish a step
    ///         already slashed as withheld.
    error DisputesDataRequestsNotSet();
    /// @notice The DataRequests contract is set once; it is `current`.
    error DisputesDataRequestsAlreadySet(address current);
    /// @notice No dispute has this id.
    error DisputesUnknown(uint256 disputeId);
    /// @notice Dispute `disputeId` is `status`, not `expected`.
    error DisputesWrongStatus(uint256 disputeId, Status status, Status expected);
    /// @notice The committee can be drawn once block `drawBlock` exists; the chain is at `blockNumber`.
    error DisputesDrawTooEarly(uint256 disputeId, uint64 drawBlock, uint256 blockNumber);
    /// @notice The commit phase of `disputeId` ended at `deadline`; it is `nowTs`.
    error DisputesCommitClosed(uint256 disputeId, uint64 deadline, uint64 nowTs);
    /// @notice The reveal phase of `disputeId` runs after `opensAt` until `closesAt`; it is `nowTs`.
    error DisputesNotRevealTime(uint256 disputeId, uint64 opensAt, uint64 closesAt, uint64 nowTs);
    /// @notice `account` does not sit on dispute `disputeId`.
    error DisputesNotOnCommittee(uint256 disputeId, address account);
    /// @notice `voter` already committed (or revealed) on `disputeId`.
    error DisputesAlreadyVoted(uint256 disputeId, address voter);
    /// @notice The revealed vote does not open `voter`'s commitment (or none was made).
    error DisputesBadReveal(uint256 disputeId, address voter);
    /// @notice Dispute `disputeId` can be settled from `readyAt`; it is `nowTs`.
    error DisputesNotSettleable(uint256 disputeId, uint64 readyAt, uint64 nowTs);
    /// @notice Inconsistent parameters: odd committee 1..MAX_COMMITTEE, shares at most 10⁴ bps, positive
    ///         periods whose sum is at most Staking's maxDisputeDuration, positive bond and slash whose
    ///         sum fits in 128 bits.
    error DisputesBadParams(Params params, uint64 maxDisputeDuration);

    event DisputeOpened(
        uint256 indexed disputeId,
        uint256 indexed batchId,
        address indexed server,
        address challenger,
        bytes32 receiptLeaf,
        uint256 bond,
        uint256 serverLocked,
        uint64 drawBlock,
        uint64 commitDeadline,
        uint64 revealDeadline
    );
    event CommitteeDrawn(uint256 indexed disputeId, address[] members);
    /// @notice The draw block's hash was no longer available (over 256 blocks old): drawn again later.
    event DrawRescheduled(uint256 indexed disputeId, uint64 drawBlock);
    event VoteCommitted(uint256 indexed disputeId, address indexed voter);
    event VoteRevealed(uint256 indexed disputeId, address indexed voter, bool serverAtFault);
    event VoterPenalized(uint256 indexed disputeId, address indexed voter, uint256 amount);
    event VoterRewarded(uint256 indexed disputeId, address indexed voter, uint256 amount);
    event DisputeSettled(
        uint256 indexed disputeId,
        Outcome outcome,
        uint256 slashed,
        uint256 toChallenger,
        uint8 faultVotes,
        uint8 correctVotes
    );
    /// @notice A server found correct received `amount` of the challenger's bond for its locked stake.
    event ServerCompensated(uint256 indexed disputeId, address indexed server, uint256 amount);
    event ParamsSet(Params params);
    /// @notice Disputes now refuses receipts whose step `dataRequests` slashed as withheld.
    event DataRequestsSet(address dataRequests);

    /// @notice Challenges `receipt`, committed in `batchId` under `proof` (the batch's server posted it,
    ///         which is its attestation: no signature is needed); locks up to `serverSlash` of the
    ///         server's free stake (possibly nothing: the dispute is then settled against what is free
    ///         at settlement) and pulls `bondFor(params(), locked)` from the caller. Returns the
    ///         dispute id (1, 2, …).
    ///         Refuses a receipt already disputed, and one whose step `dataRequests()` slashed as
    ///         withheld (an answered or still open request does not stop a dispute).
    function openDispute(
        uint256 batchId,
        ReceiptLib.Receipt calldata receipt,
        bytes32[] calldata proof
    ) external returns (uint256 disputeId);

    /// @notice Draws the committee of `disputeId` from the hash of its draw block. Anyone may call.
    function drawCommittee(uint256 disputeId) external;

    /// @notice Commits the caller's hidden vote before the commit deadline. Only committee members.
    function commitVote(uint256 disputeId, bytes32 commitment) external;

    /// @notice Reveals the caller's vote after the commit deadline, before the reveal deadline.
    function revealVote(uint256 disputeId, bool serverAtFault, bytes32 salt) external;

    /// @notice Settles `disputeId` after its reveal deadline, or earlier once every member revealed.
    ///         Anyone may call.
    function settle(uint256 disputeId) external;

    /// @notice Sets the parameters (applies to disputes opened afterwards). Only GOVERNANCE_ROLE.
    function setParams(Params calldata params) external;

    /// @notice Sets, once, the DataRequests contract whose slashes of withheld steps this contract
    ///         honours (it is deployed after Disputes, which it reads). Only GOVERNANCE_ROLE.
    function setDataRequests(IDataRequests dataRequests) external;

    /// @notice The DataRequests contract set by {setDataRequests}; zero before.
    function dataRequests() external view returns (IDataRequests);

    function dispute(uint256 disputeId) external view returns (Dispute memory);

    function committee(uint256 disputeId) external view returns (address[] memory);

    function vote(uint256 disputeId, address voter) external view returns (Vote memory);

    /// @notice The dispute of the receipt with leaf `leaf`, 0 if none.
    function disputeOfReceipt(bytes32 leaf) external view returns (uint256);

    function disputeCount() external view returns (uint256);

    function params() external view returns (Params memory);

    /// @notice The parameters dispute `disputeId` was opened under (later changes do not apply to it).
    function termsOf(uint256 disputeId) external view returns (Params memory);

    /// @notice The bond of a dispute that locks `serverLocked` under `p`:
    ///         challengeBond + serverLocked · lockBondBps / 10⁴.
    function bondFor(Params memory p, uint256 serverLocked) external pure returns (uint256);

    /// @notice The commitment a voter publishes: keccak256(abi.encode(disputeId, voter, serverAtFault, salt)).
    function voteCommitment(
        uint256 disputeId,
        address voter,
        bool serverAtFault,
        bytes32 salt
    ) external pure returns (bytes32);
}
