// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Unidirectional payment channels, client → server
/// @notice A client deposits tokens for one server; off chain it signs EIP-712 vouchers carrying the
///         cumulative amount it owes. The server redeems the latest voucher whenever it likes (each
///         redemption pays the increase since the last one, never beyond the deposit). The client
///         may top up, or start a close and take back the rest after `closeTimeout` unless the
///         server redeems first. A protocol fee (basis points) of every redemption goes to the
///         verifier reward pool.
/// @dev Voucher: `Voucher(bytes32 channelId,uint256 cumulativeAmount)` under the domain
///      ("eFed Payment Channels", "1", chainId, this contract). Channel ids are
///      keccak256(abi.encode(client, server, clientNonce)), so vouchers of a closed channel can never
///      be replayed on a new one.
///
///      θ is enforced here: a channel opens only to a server that `IStaking.isEligible` accepts
///      (serving, collateralized by stake free of locks, past probation, trust >= θ). Redemption of an
///      existing channel is not gated: the server did the work, and fraud is answered by slashing.
///      Every redemption is recorded as paid work in the trust contract (when one is set), the only
///      credit besides audits.
interface IPaymentChannels {
    struct Channel {
        address client;
        address server;
        /// @dev Total deposited.
        uint256 deposit;
        /// @dev Total redeemed by the server so far (fees included).
        uint256 paid;
        /// @dev When the client may finish closing; 0 while no close is pending.
        uint64 closeReadyAt;
        /// @dev True once finished: nothing more can be paid in or out.
        bool closed;
    }

    /// @notice Amounts must be positive.
    error ChannelZeroAmount();
    /// @notice `server` is not eligible: not serving (unregistered, undercollateralized, variant
    ///         retired), still in probation, or its trust is below θ.
    error ChannelServerNotActive(address server);
    /// @notice No channel has this id.
    error ChannelUnknown(bytes32 channelId);
    /// @notice Only the channel's `expected` party may do this; the caller was `caller`.
    error ChannelUnauthorized(bytes32 channelId, address caller, address expected);
    /// @notice The channel is closed.
    error ChannelIsClosed(bytes32 channelId);
    /// @notice A close is pending; it becomes final at `closeReadyAt`.
    error ChannelClosing(bytes32 channelId, uint64 closeReadyAt);
    /// @notice No close was started.
    error ChannelNotClosing(bytes32 channelId);
    /// @notice The close can only be finished from `closeReadyAt`; it is `nowTs`.
    error ChannelCloseNotReady(bytes32 channelId, uint64 closeReadyAt, uint64 nowTs);
    /// @notice The voucher was signed by `signer`, not by the channel's client `client`.
    error ChannelBadVoucherSigner(bytes32 channelId, address signer, address client);
    /// @notice The voucher's `cumulativeAmount` is not above what was already `paid`.
    error ChannelVoucherNotIncreasing(bytes32 channelId, uint256 cumulativeAmount, uint256 paid);
    /// @notice The whole `deposit` is already paid out.
    error ChannelDepositExhausted(bytes32 channelId, uint256 deposit);
    /// @notice The fee must be at most `maxBps` basis points.
    error ChannelFeeTooHigh(uint16 feeBps, uint16 maxBps);
    /// @notice The close timeout must be positive.
    error ChannelZeroCloseTimeout();
    /// @notice An address argument must not be zero.
    error ChannelZeroAddress();

    event ChannelOpened(bytes32 indexed channelId, address indexed client, address indexed server, uint256 deposit);
    event ChannelToppedUp(bytes32 indexed channelId, uint256 amount, uint256 deposit);
    event VoucherRedeemed(bytes32 indexed channelId, uint256 cumulativeAmount, uint256 paidToServer, uint256 fee);
    event CloseStarted(bytes32 indexed channelId, uint64 closeReadyAt);
    event ChannelClosed(bytes32 indexed channelId, uint256 refund);
    event FeeSet(uint16 feeBps);
    event CloseTimeoutSet(uint64 closeTimeout);
    event RewardPoolSet(address rewardPool);
    event TrustRecorderSet(address trust);

    /// @notice Opens a channel from the caller to `server` with `amount` deposited. Returns its id.
    function open(address server, uint256 amount) external returns (bytes32 channelId);

    /// @notice Like `open`, with an EIP-2612 permit so approval and deposit are one transaction.
    function openWithPermit(
        address server,
        uint256 amount,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external returns (bytes32 channelId);

    /// @notice Adds `amount` to the deposit. Only the client, not while closing.
    function topUp(bytes32 channelId, uint256 amount) external;

    /// @notice Pays the server the increase of `cumulativeAmount` over what was paid, capped at the
    ///         deposit, less the protocol fee. Only the server; allowed while a close is pending.
    function redeem(bytes32 channelId, uint256 cumulativeAmount, bytes calldata signature) external;

    /// @notice Starts the client's close; the remainder is refundable after `closeTimeout`.
    function startClose(bytes32 channelId) external;

    /// @notice Finishes a close whose timeout passed, refunding the client. Only the client.
    function finishClose(bytes32 channelId) external;

    /// @notice The server gives up the channel at once (after its last redemption), refunding the client.
    function closeByServer(bytes32 channelId) external;

    /// @notice The server's last word on a channel in one transaction: `redeem` the final voucher, then
    ///         `closeByServer`. Cheaper than the two calls, so the usual channel life is open + this.
    function redeemAndClose(bytes32 channelId, uint256 cumulativeAmount, bytes calldata signature) external;

    function channel(bytes32 channelId) external view returns (Channel memory);

    /// @notice Id the caller's next `open` to `server` would get.
    function nextChannelId(address client, address server) external view returns (bytes32);

    /// @notice The EIP-712 digest a client signs for a voucher.
    function voucherDigest(bytes32 channelId, uint256 cumulativeAmount) external view returns (bytes32);
}
