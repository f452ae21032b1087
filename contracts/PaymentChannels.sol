// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IPaymentChannels} from "./interfaces/IPaymentChannels.sol";
import {IStaking} from "./interfaces/IStaking.sol";
import {ITrustScores} from "./interfaces/ITrustScores.sol";

/// @title Unidirectional payment channels, client → server
/// @notice See {IPaymentChannels}.
contract PaymentChannels is IPaymentChannels, EIP712, AccessControl {
    using SafeERC20 for IERC20;

    /// @notice Role allowed to change the fee, the close timeout and the reward pool.
    bytes32 public constant GOVERNANCE_ROLE = keccak256("GOVERNANCE_ROLE");
    /// @notice Highest protocol fee accepted: 20%.
    uint16 public constant MAX_FEE_BPS = 2_000;
    uint256 private constant BPS = 10_000;
    bytes32 private constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint256 cumulativeAmount)");

    IERC20 public immutable token;
    IStaking public immutable staking;
    address public rewardPool;
    uint16 public feeBps;
    uint64 public closeTimeout;
    /// @notice Where redemptions are recorded as paid work (needs its PAYMENTS_ROLE); none when zero.
    ITrustScores public trustRecorder;

    mapping(bytes32 channelId => Channel) private _channels;
    mapping(address client => uint256) private _nonces;

    constructor(
        address admin,
        IERC20 token_,
        IStaking staking_,
        address rewardPool_,
        uint16 feeBps_,
        uint64 closeTimeout_
    ) EIP712("eFed Payment Channels", "1") {
        if (admin == address(0) || address(token_) == address(0) || address(staking_) == address(0)) {
            revert ChannelZeroAddress();
        }
        token = token_;
        staking = staking_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(GOVERNANCE_ROLE, admin);
        _setRewardPool(rewardPool_);
        _setFee(feeBps_);
        _setCloseTimeout(closeTimeout_);
    }

    // ---------------------------------------------------------------- client

    /// @inheritdoc IPaymentChannels
    function open(address server, uint256 amount) external returns (bytes32 channelId) {
        return _open(server, amount);
    }

    /// @inheritdoc IPaymentChannels
    function openWithPermit(
        address server,
        uint256 amount,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external returns (bytes32 channelId) {
        // A front-run permit leaves the allowance in place, so the transfer below still decides.
        try IERC20Permit(address(token)).permit(msg.sender, address(this), amount, deadline, v, r, s) {} catch {}
        return _open(server, amount);
    }

    /// @inheritdoc IPaymentChannels
    function topUp(bytes32 channelId, uint256 amount) external {
        if (amount == 0) revert ChannelZeroAmount();
        Channel storage c = _live(channelId);
        if (msg.sender != c.client) revert ChannelUnauthorized(channelId, msg.sender, c.client);
        if (c.closeReadyAt != 0) revert ChannelClosing(channelId, c.closeReadyAt);
        c.deposit += amount;
        emit ChannelToppedUp(channelId, amount, c.deposit);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IPaymentChannels
    function startClose(bytes32 channelId) external {
        Channel storage c = _live(channelId);
        if (msg.sender != c.client) revert ChannelUnauthorized(channelId, msg.sender, c.client);
        if (c.closeReadyAt != 0) revert ChannelClosing(channelId, c.closeReadyAt);
        uint64 readyAt = uint64(block.timestamp) + closeTimeout;
        c.closeReadyAt = readyAt;
        emit CloseStarted(channelId, readyAt);
    }

    /// @inheritdoc IPaymentChannels
    function finishClose(bytes32 channelId) external {
        Channel storage c = _live(channelId);
        if (msg.sender != c.client) revert ChannelUnauthorized(channelId, msg.sender, c.client);
        if (c.closeReadyAt == 0) revert ChannelNotClosing(channelId);
        if (block.timestamp < c.closeReadyAt) {
            revert ChannelCloseNotReady(channelId, c.closeReadyAt, uint64(block.timestamp));
        }
        _close(channelId, c);
    }

    // ---------------------------------------------------------------- server

    /// @inheritdoc IPaymentChannels
    function redeem(bytes32 channelId, uint256 cumulativeAmount, bytes calldata signature) external {
        Channel storage c = _live(channelId);
        if (msg.sender != c.server) revert ChannelUnauthorized(channelId, msg.sender, c.server);
        _redeem(channelId, c, cumulativeAmount, signature);
    }

    /// @inheritdoc IPaymentChannels
    function redeemAndClose(bytes32 channelId, uint256 cumulativeAmount, bytes calldata signature) external {
        Channel storage c = _live(channelId);
        if (msg.sender != c.server) revert ChannelUnauthorized(channelId, msg.sender, c.server);
        _redeem(channelId, c, cumulativeAmount, signature);
        _close(channelId, c);
    }

    /// @inheritdoc IPaymentChannels
    function closeByServer(bytes32 channelId) external {
        Channel storage c = _live(channelId);
        if (msg.sender != c.server) revert ChannelUnauthorized(channelId, msg.sender, c.server);
        _close(channelId, c);
    }

    // ---------------------------------------------------------------- governance

    function setFee(uint16 feeBps_) external onlyRole(GOVERNANCE_ROLE) {
        _setFee(feeBps_);
    }

    function setCloseTimeout(uint64 closeTimeout_) external onlyRole(GOVERNANCE_ROLE) {
        _setCloseTimeout(closeTimeout_);
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

    /// @inheritdoc IPaymentChannels
    function channel(bytes32 channelId) external view returns (Channel memory) {
        Channel storage c = _channels[channelId];
        if (c.client == address(0)) revert ChannelUnknown(channelId);
        return c;
    }

    /// @inheritdoc IPaymentChannels
    function nextChannelId(address client, address server) public view returns (bytes32) {
        return keccak256(abi.encode(client, server, _nonces[client]));
    }

    /// @inheritdoc IPaymentChannels
    function voucherDigest(bytes32 channelId, uint256 cumulativeAmount) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, cumulativeAmount)));
    }

    // ---------------------------------------------------------------- internals

    function _open(address server, uint256 amount) private returns (bytes32 channelId) {
        if (amount == 0) revert ChannelZeroAmount();
        if (!staking.isEligible(server)) revert ChannelServerNotActive(server);
        channelId = nextChannelId(msg.sender, server);
        ++_nonces[msg.sender];
        _channels[channelId] = Channel({
            client: msg.sender,
            server: server,
            deposit: amount,
            paid: 0,
            closeReadyAt: 0,
            closed: false
        });
        emit ChannelOpened(channelId, msg.sender, server, amount);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @dev Checks the voucher and pays the server the increase (capped at the deposit), less the fee.
    function _redeem(bytes32 channelId, Channel storage c, uint256 cumulativeAmount, bytes calldata signature) private {
        address signer = ECDSA.recover(voucherDigest(channelId, cumulativeAmount), signature);
        if (signer != c.client) revert ChannelBadVoucherSigner(channelId, signer, c.client);
        uint256 paid = c.paid;
        if (cumulativeAmount <= paid) revert ChannelVoucherNotIncreasing(channelId, cumulativeAmount, paid);
        uint256 newPaid = cumulativeAmount < c.deposit ? cumulativeAmount : c.deposit;
        if (newPaid == paid) revert ChannelDepositExhausted(channelId, c.deposit);

        c.paid = newPaid;
        uint256 amount = newPaid - paid;
        uint256 fee = (amount * feeBps) / BPS;
        emit VoucherRedeemed(channelId, cumulativeAmount, amount - fee, fee);
        ITrustScores trust = trustRecorder;
        if (address(trust) != address(0)) trust.recordPayment(c.server, amount);
        if (fee != 0) token.safeTransfer(rewardPool, fee);
        token.safeTransfer(c.server, amount - fee);
    }

    function _close(bytes32 channelId, Channel storage c) private {
        uint256 refund = c.deposit - c.paid; // paid <= deposit always: redeem caps at the deposit
        c.closed = true;
        emit ChannelClosed(channelId, refund);
        if (refund != 0) token.safeTransfer(c.client, refund);
    }

    /// @dev The channel, which must exist and not be closed.
    function _live(bytes32 channelId) private view returns (Channel storage c) {
        c = _channels[channelId];
        if (c.client == address(0)) revert ChannelUnknown(channelId);
        if (c.closed) revert ChannelIsClosed(channelId);
    }

    function _setFee(uint16 feeBps_) private {
        if (feeBps_ > MAX_FEE_BPS) revert ChannelFeeTooHigh(feeBps_, MAX_FEE_BPS);
        feeBps = feeBps_;
        emit FeeSet(feeBps_);
    }

    function _setCloseTimeout(uint64 closeTimeout_) private {
        if (closeTimeout_ == 0) revert ChannelZeroCloseTimeout();
        closeTimeout = closeTimeout_;
        emit CloseTimeoutSet(closeTimeout_);
    }

    function _setRewardPool(address rewardPool_) private {
        if (rewardPool_ == address(0)) revert ChannelZeroAddress();
        rewardPool = rewardPool_;
        emit RewardPoolSet(rewardPool_);
    }
}
