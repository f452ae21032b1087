// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ICommitments} from "./interfaces/ICommitments.sol";
import {IDataRequests} from "./interfaces/IDataRequests.sol";
import {IDisputes} from "./interfaces/IDisputes.sol";
import {IStaking} from "./interfaces/IStaking.sol";
import {ITrustScores} from "./interfaces/ITrustScores.sol";
import {IVerifierRewards} from "./interfaces/IVerifierRewards.sol";
import {ReceiptLib} from "./libraries/ReceiptLib.sol";

/// @title Disputes (settling v1: a committee of staked verifiers)
/// @notice See {IDisputes}.
contract Disputes is IDisputes, AccessControl {
    using SafeERC20 for IERC20;
    using ReceiptLib for ReceiptLib.Receipt;

    /// @notice Role allowed to change the parameters.
    bytes32 public constant GOVERNANCE_ROLE = keccak256("GOVERNANCE_ROLE");
    /// @notice Largest committee: bounds the loops of draw and settle.
    uint8 public constant MAX_COMMITTEE = 15;
    /// @notice Draw attempts per seat before the committee is left smaller.
    uint256 public constant DRAW_ATTEMPTS_PER_SEAT = 8;
    uint256 private constant BPS = 10_000;

    IERC20 public immutable token;
    IStaking public immutable staking;
    ICommitments public immutable commitments;
    ITrustScores public immutable trust;
    IVerifierRewards public immutable rewards;

    /// @inheritdoc IDisputes
    IDataRequests public dataRequests;

    Params private _params;
    /// @dev Index 0 is unused, so that dispute id 0 means "none".
    Dispute[] private _disputes;
    mapping(uint256 disputeId => Params) private _terms;
    mapping(uint256 disputeId => address[]) private _committees;
    mapping(uint256 disputeId => mapping(address voter => Vote)) private _votes;
    mapping(bytes32 leaf => uint256 disputeId) private _disputeOfReceipt;

    constructor(
        address admin,
        IERC20 token_,
        IStaking staking_,
        ICommitments commitments_,
        ITrustScores trust_,
        IVerifierRewards rewards_,
        Params memory params_
    ) {
        token = token_;
        staking = staking_;
        commitments = commitments_;
        trust = trust_;
        rewards = rewards_;
        _disputes.push();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(GOVERNANCE_ROLE, admin);
        _setParams(params_);
    }

    // ---------------------------------------------------------------- challenge

    /// @inheritdoc IDisputes
    function openDispute(
        uint256 batchId,
        ReceiptLib.Receipt calldata receipt,
        bytes32[] calldata proof
    ) external returns (uint256 disputeId) {
        if (!staking.isActiveVerifier(msg.sender)) revert DisputesNotVerifier(msg.sender);
        (address server, bytes32 leaf) = ReceiptLib.checkCommitted(commitments, batchId, receipt, proof);
        _checkUnpunished(leaf);
        Params memory p = _params;
        // Never refused for lack of free stake: other open disputes (frivolous ones included) must not
        // shield a cheater's batch. What is not free now is taken at settlement (see _settleServer).
        uint256 toLock = _free(server);
        if (toLock > p.serverSlash) toLock = p.serverSlash;
        uint256 bond = bondFor(p, toLock);

        disputeId = _disputes.length;
        Dispute storage d = _disputes.push();
        d.challenger = msg.sender;
        d.server = server;
        d.batchId = batchId;
        d.receiptLeaf = leaf;
        d.bond = uint128(bond); // _setParams keeps challengeBond + serverSlash within uint128
        d.serverLocked = uint128(toLock); // toLock <= serverSlash, a uint128
        d.openedAt = uint64(block.timestamp);
        d.drawBlock = uint64(block.number + 1);
        d.commitDeadline = uint64(block.timestamp) + p.commitPeriod;
        d.revealDeadline = d.commitDeadline + p.revealPeriod;
        d.status = Status.Open;
        _terms[disputeId] = p;
        _disputeOfReceipt[leaf] = disputeId;
        emit DisputeOpened(
            disputeId,
            batchId,
            server,
            msg.sender,
            leaf,
            bond,
            toLock,
            d.drawBlock,
            d.commitDeadline,
            d.revealDeadline
        );
        if (toLock != 0) staking.lock(server, _serverLockId(disputeId), toLock);
        // The server's stake stays slashable (no withdrawal) until this dispute can have settled.
        staking.noteCommitment(server, d.openedAt + staking.timing().maxDisputeDuration);
        token.safeTransferFrom(msg.sender, address(this), bond);
    }

    // ---------------------------------------------------------------- committee

    /// @inheritdoc IDisputes
    function drawCommittee(uint256 disputeId) external {
        Dispute storage d = _known(disputeId);
        if (d.status != Status.Open) revert DisputesWrongStatus(disputeId, d.status, Status.Open);
        if (block.timestamp > d.commitDeadline) {
            revert DisputesCommitClosed(disputeId, d.commitDeadline, uint64(block.timestamp));
        }
        if (block.number <= d.drawBlock) revert DisputesDrawTooEarly(disputeId, d.drawBlock, block.number);
        bytes32 anchor = blockhash(d.drawBlock);
        if (anchor == bytes32(0)) {
            // Older than 256 blocks: re-anchor on a block that does not exist yet, never on a known one.
            d.drawBlock = uint64(block.number);
            emit DrawRescheduled(disputeId, d.drawBlock);
            return;
        }
        d.status = Status.Voting;
        _draw(disputeId, d.challenger, keccak256(abi.encode(anchor, disputeId)));
        emit CommitteeDrawn(disputeId, _committees[disputeId]);
    }

    /// @inheritdoc IDisputes
    function commitVote(uint256 disputeId, bytes32 commitment) external {
        Dispute storage d = _known(disputeId);
        if (d.status != Status.Voting) revert DisputesWrongStatus(disputeId, d.status, Status.Voting);
        if (block.timestamp > d.commitDeadline) {
            revert DisputesCommitClosed(disputeId, d.commitDeadline, uint64(block.timestamp));
        }
        Vote storage v = _votes[disputeId][msg.sender];
        if (!v.member) revert DisputesNotOnCommittee(disputeId, msg.sender);
        if (v.commitment != bytes32(0)) revert DisputesAlreadyVoted(disputeId, msg.sender);
        v.commitment = commitment;
        emit VoteCommitted(disputeId, msg.sender);
    }

    /// @inheritdoc IDisputes
    function revealVote(uint256 disputeId, bool serverAtFault, bytes32 salt) external {
        Dispute storage d = _known(disputeId);
        if (d.status != Status.Voting) revert DisputesWrongStatus(disputeId, d.status, Status.Voting);
        if (block.timestamp <= d.commitDeadline || block.timestamp > d.revealDeadline) {
            revert DisputesNotRevealTime(disputeId, d.commitDeadline, d.revealDeadline, uint64(block.timestamp));
        }
        Vote storage v = _votes[disputeId][msg.sender];
        if (!v.member) revert DisputesNotOnCommittee(disputeId, msg.sender);
        if (v.revealed) revert DisputesAlreadyVoted(disputeId, msg.sender);
        if (v.commitment == bytes32(0) || v.commitment != voteCommitment(disputeId, msg.sender, serverAtFault, salt)) {
            revert DisputesBadReveal(disputeId, msg.sender);
        }
        v.revealed = true;
        v.serverAtFault = serverAtFault;
        // At most MAX_COMMITTEE members reveal once each: the uint8 counters cannot overflow.
        if (serverAtFault) ++d.faultVotes;
        else ++d.correctVotes;
        emit VoteRevealed(disputeId, msg.sender, serverAtFault);
    }

    // ---------------------------------------------------------------- settlement

    /// @inheritdoc IDisputes
    function settle(uint256 disputeId) external {
        Dispute storage d = _known(disputeId);
        if (d.status != Status.Open && d.status != Status.Voting) {
            revert DisputesWrongStatus(disputeId, d.status, Status.Voting);
        }
        address[] storage members = _committees[disputeId];
        uint256 size = members.length;
        bool allRevealed = d.status == Status.Voting && size != 0 && d.faultVotes + d.correctVotes == size;
        if (block.timestamp <= d.revealDeadline && !allRevealed) {
            revert DisputesNotSettleable(disputeId, d.revealDeadline + 1, uint64(block.timestamp));
        }
        Outcome outcome = Outcome.NoQuorum;
        if (uint256(d.faultVotes) * 2 > size) outcome = Outcome.ServerAtFault;
        else if (uint256(d.correctVotes) * 2 > size) outcome = Outcome.ServerCorrect;
        d.status = Status.Settled;
        d.outcome = outcome;

        (uint256 slashed, uint256 toChallenger) = _settleServer(disputeId, d, outcome);
        emit DisputeSettled(disputeId, outcome, slashed, toChallenger, d.faultVotes, d.correctVotes);
        _settleVoters(disputeId, members, outcome);
    }

    // ---------------------------------------------------------------- governance

    /// @inheritdoc IDisputes
    function setParams(Params calldata params_) external onlyRole(GOVERNANCE_ROLE) {
        _setParams(params_);
    }

    /// @inheritdoc IDisputes
    function setDataRequests(IDataRequests dataRequests_) external onlyRole(GOVERNANCE_ROLE) {
        if (address(dataRequests) != address(0)) revert DisputesDataRequestsAlreadySet(address(dataRequests));
        dataRequests = dataRequests_;
        emit DataRequestsSet(address(dataRequests_));
    }

    // ---------------------------------------------------------------- reads

    /// @inheritdoc IDisputes
    function dispute(uint256 disputeId) external view returns (Dispute memory) {
        return _known(disputeId);
    }

    /// @inheritdoc IDisputes
    function committee(uint256 disputeId) external view returns (address[] memory) {
        _known(disputeId);
        return _committees[disputeId];
    }

    /// @inheritdoc IDisputes
    function vote(uint256 disputeId, address voter) external view returns (Vote memory) {
        _known(disputeId);
        return _votes[disputeId][voter];
    }

    /// @inheritdoc IDisputes
    function disputeOfReceipt(bytes32 leaf) external view returns (uint256) {
        return _disputeOfReceipt[leaf];
    }

    /// @inheritdoc IDisputes
    function disputeCount() external view returns (uint256) {
        return _disputes.length - 1;
    }

    /// @inheritdoc IDisputes
    function params() external view returns (Params memory) {
        return _params;
    }

    /// @inheritdoc IDisputes
    function termsOf(uint256 disputeId) external view returns (Params memory) {
        _known(disputeId);
        return _terms[disputeId];
    }

    /// @inheritdoc IDisputes
    function bondFor(Params memory p, uint256 serverLocked) public pure returns (uint256) {
        return p.challengeBond + (serverLocked * p.lockBondBps) / BPS;
    }

    /// @inheritdoc IDisputes
    function voteCommitment(
        uint256 disputeId,
        address voter,
        bool serverAtFault,
        bytes32 salt
    ) public pure returns (bytes32) {
        return keccak256(abi.encode(disputeId, voter, serverAtFault, salt));
    }

    // ---------------------------------------------------------------- internals

    /// @dev One dispute per receipt, and none for a step already slashed as withheld (one punishment
    ///      per step; DataRequests refuses the reverse: a request for a disputed receipt).
    function _checkUnpunished(bytes32 leaf) private view {
        uint256 existing = _disputeOfReceipt[leaf];
        if (existing != 0) revert DisputesReceiptAlreadyDisputed(leaf, existing);
        IDataRequests requests = dataRequests;
        if (address(requests) == address(0)) revert DisputesDataRequestsNotSet();
        uint256 requestId = requests.slashedRequestOfReceipt(leaf);
        if (requestId != 0) revert DisputesReceiptSlashedAsWithheld(leaf, requestId);
    }

    /// @dev Draws up to `committeeSize` distinct active verifiers other than the challenger whose
    ///      free stake covers `voterPenalty`, locking that much of each. Bounded attempts: a pool too small for the seats
    ///      leaves the committee smaller, and majorities are counted on the drawn size.
    function _draw(uint256 disputeId, address challenger, bytes32 seed) private {
        Params storage p = _terms[disputeId];
        uint256 size = p.committeeSize;
        uint256 pool = staking.verifierCount();
        address[] storage members = _committees[disputeId];
        uint256 attempts = size * DRAW_ATTEMPTS_PER_SEAT;
        for (uint256 i = 0; i < attempts && members.length < size && pool != 0; ++i) {
            address candidate = staking.verifierAt(uint256(keccak256(abi.encode(seed, i))) % pool);
            Vote storage v = _votes[disputeId][candidate];
            if (candidate == challenger || v.member || !staking.isActiveVerifier(candidate)) continue;
            // Every seat is backed by the full penalty, free of the member's other locks.
            uint128 penalty = p.voterPenalty;
            if (_free(candidate) < penalty) continue;
            v.member = true;
            v.locked = penalty;
            members.push(candidate);
            if (penalty != 0) staking.lock(candidate, _voterLockId(disputeId, candidate), penalty);
        }
    }

    /// @dev Moves the server's stake and the challenger's bond by the outcome, and records the audit
    ///      in the trust scores. At fault, a dispute that locked less than `serverSlash` (stake was
    ///      held by other disputes when it opened) first takes what has become free since: it is
    ///      settled against what remains. Server correct: the bond's lock-proportional part
    ///      compensates the server for the time its stake was locked, the rest goes to the pool.
    function _settleServer(
        uint256 disputeId,
        Dispute storage d,
        Outcome outcome
    ) private returns (uint256 slashed, uint256 toChallenger) {
        bytes32 lockId = _serverLockId(disputeId);
        Params storage terms = _terms[disputeId];
        uint256 locked = d.serverLocked;
        if (outcome == Outcome.ServerAtFault) {
            if (locked < terms.serverSlash) locked = _topUp(d.server, lockId, locked, terms.serverSlash);
            slashed = locked;
            toChallenger = (slashed * terms.challengerShareBps) / BPS;
            if (toChallenger != 0) staking.slash(lockId, toChallenger, d.challenger);
            if (slashed != toChallenger) staking.slash(lockId, slashed - toChallenger, address(rewards));
        }
        if (locked != 0) staking.unlock(lockId);
        if (outcome != Outcome.NoQuorum) trust.recordAudit(d.server, outcome == Outcome.ServerCorrect);
        if (outcome != Outcome.ServerCorrect) {
            token.safeTransfer(d.challenger, d.bond);
            return (slashed, toChallenger);
        }
        // bond >= challengeBond: bondFor adds the lock-proportional part to it
        uint256 compensation = d.bond - terms.challengeBond;
        token.safeTransfer(address(rewards), d.bond - compensation);
        if (compensation != 0) {
            emit ServerCompensated(disputeId, d.server, compensation);
            token.safeTransfer(d.server, compensation);
        }
    }

    /// @dev Re-locks `locked` plus whatever of `server`'s stake is free now, up to `target`, under
    ///      `lockId`; returns the new lock.
    function _topUp(address server, bytes32 lockId, uint256 locked, uint256 target) private returns (uint256) {
        uint256 extra = _free(server);
        if (extra > target - locked) extra = target - locked;
        if (extra == 0) return locked;
        if (locked != 0) staking.unlock(lockId);
        staking.lock(server, lockId, locked + extra);
        return locked + extra;
    }

    /// @dev Members who did not reveal the majority vote (any vote, without a majority) lose their
    ///      locked stake to the reward pool; then those with the majority are paid from the pool.
    function _settleVoters(uint256 disputeId, address[] storage members, Outcome outcome) private {
        bool decided = outcome != Outcome.NoQuorum;
        bool majority = outcome == Outcome.ServerAtFault;
        uint256 size = members.length;
        for (uint256 i = 0; i < size; ++i) {
            address member = members[i];
            Vote storage v = _votes[disputeId][member];
            bool withMajority = v.revealed && (!decided || v.serverAtFault == majority);
            if (v.locked == 0) continue;
            bytes32 lockId = _voterLockId(disputeId, member);
            if (!withMajority) {
                staking.slash(lockId, v.locked, address(rewards));
                emit VoterPenalized(disputeId, member, v.locked);
            }
            staking.unlock(lockId);
        }
        uint256 reward = _terms[disputeId].voterReward;
        if (!decided || reward == 0) return;
        for (uint256 i = 0; i < size; ++i) {
            address member = members[i];
            Vote storage v = _votes[disputeId][member];
            if (!v.revealed || v.serverAtFault != majority) continue;
            uint256 available = rewards.unallocated();
            uint256 amount = reward < available ? reward : available;
            if (amount == 0) return;
            rewards.allocate(member, amount);
            emit VoterRewarded(disputeId, member, amount);
        }
    }

    /// @dev Stake of `account` not yet locked by any dispute.
    function _free(address account) private view returns (uint256) {
        IStaking.Operator memory op = staking.operator(account);
        return op.bonded + op.unbonding - op.locked; // Staking keeps locked <= bonded + unbonding
    }

    function _known(uint256 disputeId) private view returns (Dispute storage d) {
        if (disputeId == 0 || disputeId >= _disputes.length) revert DisputesUnknown(disputeId);
        d = _disputes[disputeId];
    }

    function _serverLockId(uint256 disputeId) private pure returns (bytes32) {
        return keccak256(abi.encode("server", disputeId));
    }

    function _voterLockId(uint256 disputeId, address voter) private pure returns (bytes32) {
        return keccak256(abi.encode("voter", disputeId, voter));
    }

    function _setParams(Params memory p) private {
        uint64 maxDuration = staking.timing().maxDisputeDuration;
        bool badCommittee = p.committeeSize == 0 || p.committeeSize > MAX_COMMITTEE || p.committeeSize % 2 == 0;
        bool badPeriods = p.commitPeriod == 0 || p.revealPeriod == 0 ||
            uint256(p.commitPeriod) + p.revealPeriod > maxDuration;
        bool badShares = p.challengerShareBps > BPS || p.lockBondBps > BPS;
        // keeps bondFor(p, serverSlash) within the uint128 a dispute stores
        bool badAmounts = p.challengeBond == 0 || p.serverSlash == 0 ||
            uint256(p.challengeBond) + p.serverSlash > type(uint128).max;
        if (badCommittee || badPeriods || badShares || badAmounts) {
            revert DisputesBadParams(p, maxDuration);
        }
        _params = p;
        emit ParamsSet(p);
    }
}
