// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {ITicketBroker} from "./interfaces/ITicketBroker.sol";
import {IStaking} from "./interfaces/IStaking.sol";
import {ITrustScores} from "./interfaces/ITrustScores.sol";

/// @title Probabilistic micropayments: one deposit per client, winning tickets redeemed by servers
/// @notice See {ITicketBroker}.
contract TicketBroker is ITicketBroker, EIP712, AccessControl {
    using SafeERC20 for IERC20;

    /// @notice Role allowed to change the fee, the unlock period, the reserve pool size and the reward pool.
    bytes32 public constant GOVERNANCE_ROLE = keccak256("GOVERNANCE_ROLE");
    /// @notice Highest protocol fee accepted: 20%.
    uint16 public constant MAX_FEE_BPS = 2_000;
    uint256 private constant BPS = 10_000;
    bytes32 private constant TICKET_TYPEHASH = keccak256(
        abi.encodePacked(
            "Ticket(address recipient,address sender,uint256 faceValue,uint256 winProb,uint256 senderNonce,",
            "bytes32 recipientRandHash,uint64 expiration,bytes32 auxData)"
        )
    );

    IERC20 public immutable token;
    IStaking public immutable staking;
    address public rewardPool;
    uint16 public feeBps;
    /// @notice Seconds between `unlock` and `withdraw`: how long servers have to redeem what they hold.
    uint64 public unlockPeriod;
    /// @notice How many recipients a frozen reserve is split among (each may take frozen / this).
    uint32 public reservePoolSize;
    /// @notice Where redemptions are recorded as paid work (needs its PAYMENTS_ROLE); none when zero.
    ITrustScores public trustRecorder;

    mapping(address sender => SenderInfo) private _senders;
    mapping(address sender => ReserveInfo) private _reserves;
    mapping(address sender => mapping(uint32 epoch => mapping(address recipient => uint256))) private _reserveClaimed;
    /// @inheritdoc ITicketBroker
    mapping(bytes32 ticketHash => bool) public usedTickets;

    constructor(
        address admin,
        IERC20 token_,
        IStaking staking_,
        address rewardPool_,
        uint16 feeBps_,
        uint64 unlockPeriod_,
        uint32 reservePoolSize_
    ) EIP712("eFed Ticket Broker", "1") {
        if (admin == address(0) || address(token_) == address(0) || address(staking_) == address(0)) {
            revert TicketZeroAddress();
        }
        token = token_;
        staking = staking_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(GOVERNANCE_ROLE, admin);
        _setRewardPool(rewardPool_);
        _setFee(feeBps_);
        _setUnlockPeriod(unlockPeriod_);
        _setReservePoolSize(reservePoolSize_);
    }

    // ---------------------------------------------------------------- sender (client)

    /// @inheritdoc ITicketBroker
    function fund(uint256 depositAmount, uint256 reserveAmount) external {
        _fund(depositAmount, reserveAmount);
    }

    /// @inheritdoc ITicketBroker
    function fundWithPermit(
        uint256 depositAmount,
        uint256 reserveAmount,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        // A front-run permit leaves the allowance in place, so the transfer in _fund still decides.
        try IERC20Permit(address(token)).permit(msg.sender, address(this), depositAmount + reserveAmount, deadline, v, r, s) {} catch {}
        _fund(depositAmount, reserveAmount);
    }

    /// @inheritdoc ITicketBroker
    function unlock() external {
        SenderInfo storage info = _senders[msg.sender];
        if (info.deposit == 0 && info.reserve == 0) revert TicketNothingToWithdraw(msg.sender);
        if (info.withdrawableAt != 0) revert TicketUnlockPending(msg.sender, info.withdrawableAt);
        uint64 at = uint64(block.timestamp) + unlockPeriod;
        info.withdrawableAt = at;
        emit Unlocked(msg.sender, at);
    }

    /// @inheritdoc ITicketBroker
    function cancelUnlock() external {
        SenderInfo storage info = _senders[msg.sender];
        if (info.withdrawableAt == 0) revert TicketNotUnlocking(msg.sender);
        info.withdrawableAt = 0;
        emit UnlockCancelled(msg.sender);
    }

    /// @inheritdoc ITicketBroker
    function withdraw() external {
        SenderInfo memory info = _senders[msg.sender];
        if (info.withdrawableAt == 0) revert TicketNotUnlocking(msg.sender);
        if (block.timestamp < info.withdrawableAt) {
            revert TicketUnlockNotReady(msg.sender, info.withdrawableAt, uint64(block.timestamp));
        }
        uint256 total = uint256(info.deposit) + info.reserve;
        if (total == 0) revert TicketNothingToWithdraw(msg.sender);
        delete _senders[msg.sender];
        // The reserve is gone: a later reserve starts a new epoch with nothing frozen or claimed.
        ReserveInfo storage res = _reserves[msg.sender];
        res.frozen = 0;
        ++res.epoch;
        emit Withdrawn(msg.sender, info.deposit, info.reserve);
        token.safeTransfer(msg.sender, total);
    }

    // ---------------------------------------------------------------- recipient (server)

    /// @inheritdoc ITicketBroker
    function redeemWinningTicket(Ticket calldata ticket, bytes calldata signature, uint256 recipientRand) external {
        bytes32 hash = _checkWinning(ticket, signature, recipientRand);
        usedTickets[hash] = true;
        _pay(hash, ticket);
    }

    // ---------------------------------------------------------------- governance

    function setFee(uint16 feeBps_) external onlyRole(GOVERNANCE_ROLE) {
        _setFee(feeBps_);
    }

    function setUnlockPeriod(uint64 unlockPeriod_) external onlyRole(GOVERNANCE_ROLE) {
        _setUnlockPeriod(unlockPeriod_);
    }

    function setReservePoolSize(uint32 reservePoolSize_) external onlyRole(GOVERNANCE_ROLE) {
        _setReservePoolSize(reservePoolSize_);
    }

    function setRewardPool(address rewardPool_) external onlyRole(GOVERNANCE_ROLE) {
        _setRewardPool(rewardPool_);
    }

    /// @notice Sets the trust contract that redemptions credit (zero: none). That contract must have
    ///         granted this one its PAYMENTS_ROLE first, or every redemption reverts.
    function setTrustRecorder(address trust) external onlyRole(GOVERNANCE_ROLE) {
        trustRecorder = ITrustScores(trust);
        emit TrustRecorderSet(trust);
    }

    // ---------------------------------------------------------------- reads

    /// @inheritdoc ITicketBroker
    function senderInfo(address sender) external view returns (SenderInfo memory) {
        return _senders[sender];
    }

    /// @inheritdoc ITicketBroker
    function reserveInfo(address sender) external view returns (ReserveInfo memory) {
        return _reserves[sender];
    }

    /// @inheritdoc ITicketBroker
    function reserveAvailable(address sender, address recipient) public view returns (uint256) {
        ReserveInfo memory res = _reserves[sender];
        uint256 reserve = _senders[sender].reserve;
        // Not frozen yet: the share the recipient would get if it froze the reserve now.
        uint256 share = (res.frozen == 0 ? reserve : res.frozen) / reservePoolSize;
        uint256 claimed = _reserveClaimed[sender][res.epoch][recipient];
        uint256 left = share > claimed ? share - claimed : 0;
        return left < reserve ? left : reserve;
    }

    /// @inheritdoc ITicketBroker
    function ticketHash(Ticket calldata t) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    TICKET_TYPEHASH,
                    t.recipient,
                    t.sender,
                    t.faceValue,
                    t.winProb,
                    t.senderNonce,
                    t.recipientRandHash,
                    t.expiration,
                    t.auxData
                )
            )
        );
    }

    /// @inheritdoc ITicketBroker
    function isWinningTicket(bytes32 hash, uint256 recipientRand, uint256 winProb) public pure returns (bool) {
        // winProb = 2^256 - 1 stands for probability 1 (2^256 does not fit): such a ticket always wins.
        return winProb == type(uint256).max || uint256(keccak256(abi.encode(hash, recipientRand))) < winProb;
    }

    // ---------------------------------------------------------------- internals

    /// @dev Every check a redemption needs, cheapest first; returns the ticket hash.
    function _checkWinning(Ticket calldata ticket, bytes calldata signature, uint256 recipientRand) private view returns (bytes32 hash) {
        hash = ticketHash(ticket);
        if (msg.sender != ticket.recipient) revert TicketWrongRecipient(hash, ticket.recipient, msg.sender);
        if (ticket.faceValue == 0) revert TicketZeroFaceValue(hash);
        if (block.timestamp > ticket.expiration) revert TicketExpired(hash, ticket.expiration, uint64(block.timestamp));
        if (usedTickets[hash]) revert TicketAlreadyRedeemed(hash);
        if (keccak256(abi.encode(recipientRand)) != ticket.recipientRandHash) {
            revert TicketBadRecipientRand(hash, ticket.recipientRandHash);
        }
        if (!isWinningTicket(hash, recipientRand, ticket.winProb)) revert TicketNotWinning(hash);
        address signer = ECDSA.recover(hash, signature);
        if (signer != ticket.sender) revert TicketBadSigner(hash, signer, ticket.sender);
        if (!staking.isServing(ticket.recipient)) revert TicketRecipientNotServing(ticket.recipient);
    }

    /// @dev Draws the face value from the sender, then pays the fee to the pool and the rest to the recipient.
    function _pay(bytes32 hash, Ticket calldata ticket) private {
        (uint256 amount, uint256 fromReserve) = _draw(ticket.sender, ticket.recipient, ticket.faceValue);
        if (amount == 0) revert TicketSenderUnfunded(hash, ticket.sender, ticket.recipient);
        uint256 fee = (amount * feeBps) / BPS;
        emit WinningTicketRedeemed(hash, ticket.sender, ticket.recipient, ticket.faceValue, amount - fee, fee, fromReserve, ticket.auxData);
        ITrustScores trust = trustRecorder;
        if (address(trust) != address(0)) trust.recordPayment(ticket.recipient, amount);
        if (fee != 0) token.safeTransfer(rewardPool, fee);
        token.safeTransfer(ticket.recipient, amount - fee);
    }

    function _fund(uint256 depositAmount, uint256 reserveAmount) private {
        if (depositAmount == 0 && reserveAmount == 0) revert TicketZeroAmount();
        SenderInfo storage info = _senders[msg.sender];
        if (depositAmount != 0) {
            uint256 deposit = uint256(info.deposit) + depositAmount;
            if (deposit > type(uint96).max) revert TicketAmountTooLarge(deposit, type(uint96).max);
            info.deposit = uint96(deposit);
            emit DepositFunded(msg.sender, depositAmount, deposit);
        }
        if (reserveAmount != 0) {
            uint256 reserve = uint256(info.reserve) + reserveAmount;
            if (reserve > type(uint96).max) revert TicketAmountTooLarge(reserve, type(uint96).max);
            info.reserve = uint96(reserve);
            // A funded reserve is a new guarantee: its split starts over from what it now holds.
            ReserveInfo storage res = _reserves[msg.sender];
            res.frozen = 0;
            uint32 epoch = ++res.epoch;
            emit ReserveFunded(msg.sender, reserveAmount, reserve, epoch);
        }
        token.safeTransferFrom(msg.sender, address(this), depositAmount + reserveAmount);
    }

    /// @dev Takes up to `faceValue` of `sender`'s funds for `recipient`: the deposit first, then the
    ///      recipient's share of the (frozen) reserve. The one place a sender's balances go down on
    ///      redemption. Returns the amount taken and the part of it from the reserve.
    function _draw(address sender, address recipient, uint256 faceValue) private returns (uint256 amount, uint256 fromReserve) {
        SenderInfo storage info = _senders[sender];
        uint256 deposit = info.deposit;
        if (faceValue <= deposit) {
            // faceValue <= deposit < 2^96: the difference fits
            info.deposit = uint96(deposit - faceValue);
            return (faceValue, 0);
        }
        info.deposit = 0;
        uint256 reserve = info.reserve;
        if (reserve == 0) return (deposit, 0);
        fromReserve = _reserveShare(sender, recipient, faceValue - deposit, reserve);
        // fromReserve <= reserve < 2^96
        if (fromReserve != 0) info.reserve = uint96(reserve - fromReserve);
        amount = deposit + fromReserve;
    }

    /// @dev How much of `shortfall` `recipient` may take from `sender`'s `reserve` (non-zero),
    ///      freezing the reserve at its first draw of the epoch and recording the claim.
    function _reserveShare(address sender, address recipient, uint256 shortfall, uint256 reserve) private returns (uint256 taken) {
        ReserveInfo storage res = _reserves[sender];
        uint32 epoch = res.epoch;
        uint256 frozen = res.frozen;
        if (frozen == 0) {
            frozen = reserve;
            res.frozen = uint96(reserve);
            emit ReserveFrozen(sender, epoch, reserve, reserve / reservePoolSize);
        }
        uint256 claimed = _reserveClaimed[sender][epoch][recipient];
        uint256 share = frozen / reservePoolSize;
        uint256 left = share > claimed ? share - claimed : 0;
        taken = shortfall < left ? shortfall : left;
        if (taken > reserve) taken = reserve; // never more than is there
        if (taken != 0) _reserveClaimed[sender][epoch][recipient] = claimed + taken;
    }

    function _setFee(uint16 feeBps_) private {
        if (feeBps_ > MAX_FEE_BPS) revert TicketFeeTooHigh(feeBps_, MAX_FEE_BPS);
        feeBps = feeBps_;
        emit FeeSet(feeBps_);
    }

    function _setUnlockPeriod(uint64 unlockPeriod_) private {
        if (unlockPeriod_ == 0) revert TicketZeroUnlockPeriod();
        unlockPeriod = unlockPeriod_;
        emit UnlockPeriodSet(unlockPeriod_);
    }

    function _setReservePoolSize(uint32 reservePoolSize_) private {
        if (reservePoolSize_ == 0) revert TicketZeroReservePoolSize();
        reservePoolSize = reservePoolSize_;
        emit ReservePoolSizeSet(reservePoolSize_);
    }

    function _setRewardPool(address rewardPool_) private {
        if (rewardPool_ == address(0)) revert TicketZeroAddress();
        rewardPool = rewardPool_;
        emit RewardPoolSet(rewardPool_);
    }
}
