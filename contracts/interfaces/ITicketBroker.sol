// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Probabilistic micropayments (lottery tickets), one client deposit shared by every server
/// @notice Livepeer's scheme. A client (sender) funds ONE deposit and ONE reserve here, whatever the
///         number of servers it pays. Per step it hands each server a signed ticket of face value F
///         that wins with probability p = winProb / 2^256, so its expected value F·p is exactly
///         what the step owes. Only winning tickets come on chain: the server (recipient) redeems
///         one and is paid F from the deposit. The randomness is shared: the recipient picks a
///         secret `recipientRand` and gives the sender only its hash before any ticket is signed,
///         and the ticket wins when keccak256(abi.encode(ticketHash, recipientRand)) < winProb.
///         The sender cannot tell winners from losers when it signs; the recipient cannot choose
///         the outcome after the ticket is signed.
///
///         When a winner exceeds the deposit, the rest is drawn from the reserve: at the first such
///         draw the reserve is frozen and each recipient may take at most frozen / `reservePoolSize`
///         of it (Livepeer splits by its active set the same way), so one server cannot empty the
///         reserve that guarantees the others.
///
///         A sender's funds leave only through `unlock`, then `withdraw` once `unlockPeriod` has
///         passed: redemptions keep working during the unlock, so a sender cannot front-run a
///         server's redemption by withdrawing. Every redemption pays a protocol fee (basis points)
///         to the verifier reward pool and is recorded as paid work in the trust contract.
/// @dev Ticket: `Ticket(address recipient,address sender,uint256 faceValue,uint256 winProb,
///      uint256 senderNonce,bytes32 recipientRandHash,uint64 expiration,bytes32 auxData)` under the
///      domain ("eFed Ticket Broker", "1", chainId, this contract). Its EIP-712 digest is the ticket
///      hash; a redeemed hash is never paid again. `recipientRandHash` = keccak256(abi.encode(rand)).
///      Recipients must be serving servers (`IStaking.isServing`) when they redeem.
interface ITicketBroker {
    /// @notice A ticket as signed by its sender.
    struct Ticket {
        /// @dev The server paid when it wins; only it may redeem.
        address recipient;
        /// @dev The client whose deposit pays.
        address sender;
        /// @dev Paid when the ticket wins (token base units).
        uint256 faceValue;
        /// @dev Wins when keccak256(abi.encode(ticketHash, recipientRand)) < winProb; probability
        ///      winProb / 2^256, except 2^256 - 1, which always wins (probability 1).
        uint256 winProb;
        /// @dev Makes each ticket under one recipientRandHash distinct.
        uint256 senderNonce;
        /// @dev keccak256(abi.encode(recipientRand)), committed by the recipient beforehand.
        bytes32 recipientRandHash;
        /// @dev Unix time after which the ticket can no longer be redeemed.
        uint64 expiration;
        /// @dev Free for the protocol: e.g. the session the ticket pays for.
        bytes32 auxData;
    }

    /// @notice A sender's funds. Packed in one slot.
    struct SenderInfo {
        uint96 deposit;
        uint96 reserve;
        /// @dev When `withdraw` becomes possible; 0 while no unlock is pending.
        uint64 withdrawableAt;
    }

    /// @notice The reserve's state for one sender.
    struct ReserveInfo {
        /// @dev The reserve when first drawn on in this epoch; 0 while not frozen.
        uint96 frozen;
        /// @dev Bumped whenever the reserve is funded: the freeze and the claims start over.
        uint32 epoch;
    }

    /// @notice Amounts must be positive.
    error TicketZeroAmount();
    /// @notice An amount does not fit the 96-bit balance (`amount` after adding, `max` allowed).
    error TicketAmountTooLarge(uint256 amount, uint256 max);
    /// @notice An address argument must not be zero.
    error TicketZeroAddress();
    /// @notice The fee must be at most `maxBps` basis points.
    error TicketFeeTooHigh(uint16 feeBps, uint16 maxBps);
    /// @notice The unlock period must be positive.
    error TicketZeroUnlockPeriod();
    /// @notice The reserve pool size must be positive.
    error TicketZeroReservePoolSize();
    /// @notice Only the ticket's `recipient` may redeem it; the caller was `caller`.
    error TicketWrongRecipient(bytes32 ticketHash, address recipient, address caller);
    /// @notice The recipient is not a serving server.
    error TicketRecipientNotServing(address recipient);
    /// @notice The ticket expired at `expiration`; it is `nowTs`.
    error TicketExpired(bytes32 ticketHash, uint64 expiration, uint64 nowTs);
    /// @notice The ticket was signed by `signer`, not by its sender `sender`.
    error TicketBadSigner(bytes32 ticketHash, address signer, address sender);
    /// @notice The revealed recipientRand does not hash to the ticket's `recipientRandHash`.
    error TicketBadRecipientRand(bytes32 ticketHash, bytes32 recipientRandHash);
    /// @notice The ticket does not win with this recipientRand.
    error TicketNotWinning(bytes32 ticketHash);
    /// @notice The ticket was redeemed already.
    error TicketAlreadyRedeemed(bytes32 ticketHash);
    /// @notice The ticket's face value is zero.
    error TicketZeroFaceValue(bytes32 ticketHash);
    /// @notice Neither the sender's deposit nor the recipient's share of its reserve can pay anything.
    error TicketSenderUnfunded(bytes32 ticketHash, address sender, address recipient);
    /// @notice An unlock is pending already; withdrawal is possible from `withdrawableAt`.
    error TicketUnlockPending(address sender, uint64 withdrawableAt);
    /// @notice No unlock was started.
    error TicketNotUnlocking(address sender);
    /// @notice Withdrawal is possible from `withdrawableAt`; it is `nowTs`.
    error TicketUnlockNotReady(address sender, uint64 withdrawableAt, uint64 nowTs);
    /// @notice The sender has nothing to withdraw.
    error TicketNothingToWithdraw(address sender);

    event DepositFunded(address indexed sender, uint256 amount, uint256 deposit);
    event ReserveFunded(address indexed sender, uint256 amount, uint256 reserve, uint32 epoch);
    /// @notice A winning ticket paid `paidToRecipient` + `fee`; `fromReserve` of it came from the reserve.
    event WinningTicketRedeemed(
        bytes32 indexed ticketHash,
        address indexed sender,
        address indexed recipient,
        uint256 faceValue,
        uint256 paidToRecipient,
        uint256 fee,
        uint256 fromReserve,
        bytes32 auxData
    );
    event ReserveFrozen(address indexed sender, uint32 epoch, uint256 frozen, uint256 perRecipient);
    event Unlocked(address indexed sender, uint64 withdrawableAt);
    event UnlockCancelled(address indexed sender);
    event Withdrawn(address indexed sender, uint256 deposit, uint256 reserve);
    event FeeSet(uint16 feeBps);
    event UnlockPeriodSet(uint64 unlockPeriod);
    event ReservePoolSizeSet(uint32 reservePoolSize);
    event RewardPoolSet(address rewardPool);
    event TrustRecorderSet(address trust);

    /// @notice Adds `depositAmount` to the caller's deposit and `reserveAmount` to its reserve.
    function fund(uint256 depositAmount, uint256 reserveAmount) external;

    /// @notice Like `fund`, with an EIP-2612 permit of the sum: approval and funding in one transaction.
    function fundWithPermit(
        uint256 depositAmount,
        uint256 reserveAmount,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external;

    /// @notice Starts the caller's unlock: `withdraw` is possible after `unlockPeriod`. Tickets
    ///         stay redeemable meanwhile.
    function unlock() external;

    /// @notice Cancels a pending unlock.
    function cancelUnlock() external;

    /// @notice Pays the caller its whole deposit and reserve once its unlock period has passed.
    function withdraw() external;

    /// @notice Pays a winning ticket's face value to its recipient (the caller), less the fee: from
    ///         the deposit, the rest from the recipient's share of the reserve, capped at what is
    ///         there. The ticket is spent even when only part could be paid.
    function redeemWinningTicket(Ticket calldata ticket, bytes calldata signature, uint256 recipientRand) external;

    function senderInfo(address sender) external view returns (SenderInfo memory);

    function reserveInfo(address sender) external view returns (ReserveInfo memory);

    /// @notice What `recipient` could still draw from `sender`'s reserve now.
    function reserveAvailable(address sender, address recipient) external view returns (uint256);

    /// @notice True when the ticket with this hash was redeemed.
    function usedTickets(bytes32 ticketHash) external view returns (bool);

    /// @notice The EIP-712 digest (the ticket hash) a sender signs.
    function ticketHash(Ticket calldata ticket) external view returns (bytes32);

    /// @notice Whether a ticket with hash `hash` wins with `recipientRand` at `winProb` (always when
    ///         winProb = 2^256 - 1).
    function isWinningTicket(bytes32 hash, uint256 recipientRand, uint256 winProb) external pure returns (bool);
}
