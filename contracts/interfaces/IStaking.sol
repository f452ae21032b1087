// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {VariantId} from "./IModelRegistry.sol";

/// @title Staking for servers and verifiers
/// @notice Operators deposit stake, register as a server (for a layer range of one model variant) or
///         as a verifier, and leave through an unbonding delay longer than the challenge window plus
///         the longest dispute, so that any work they committed can still be challenged and slashed.
/// @dev Every stake balance change (deposit, unbond, withdraw, slash) goes through one internal
///      function, so `totalStaked() == Σ (bonded + unbonding)` holds in one place. Locks taken by
///      open disputes are a constraint on withdrawal, not a balance move.
interface IStaking {
    enum Role {
        None,
        Server,
        Verifier
    }

    struct Operator {
        /// @dev Active stake, counted towards the registration minimum.
        uint256 bonded;
        /// @dev Stake on its way out; still slashable until withdrawn.
        uint256 unbonding;
        /// @dev Part of bonded + unbonding frozen by open disputes; never withdrawable while locked.
        uint256 locked;
        /// @dev When `unbonding` can be withdrawn (unix seconds).
        uint64 unbondReadyAt;
        Role role;
    }

    struct Server {
        VariantId variant;
        /// @dev First layer served.
        uint16 firstLayer;
        /// @dev One past the last layer served (exclusive).
        uint16 lastLayer;
        /// @dev Price per token, in token base units.
        uint256 pricePerToken;
        /// @dev WebSocket URL clients connect to.
        string endpoint;
    }

    /// @notice What a client needs to route to a server, in one read.
    struct ServerInfo {
        address operator;
        uint16 firstLayer;
        uint16 lastLayer;
        uint256 pricePerToken;
        /// @dev Bonded stake.
        uint256 stake;
        /// @dev Trust score in WAD from the trust contract (0 if none is set).
        uint256 trust;
        /// @dev True when bonded stake still covers the minimum for the range.
        bool collateralized;
        string endpoint;
    }

    struct Timing {
        /// @dev Seconds after a commitment batch is posted during which it can be challenged.
        uint64 challengeWindow;
        /// @dev Longest a dispute can stay open, seconds.
        uint64 maxDisputeDuration;
        /// @dev Seconds between an unbond request and its withdrawal; must exceed the two above.
        uint64 unbondingDelay;
    }

    struct StakeParams {
        /// @dev Minimum bonded stake of a server, before the per-layer part.
        uint256 serverBaseStake;
        /// @dev Additional minimum stake per layer served.
        uint256 serverStakePerLayer;
        /// @dev Minimum bonded stake of a verifier.
        uint256 verifierMinStake;
    }

    /// @notice An amount must be positive.
    error StakingZeroAmount();
    /// @notice An address argument must not be zero.
    error StakingZeroAddress();
    /// @notice `operator` has `stake` bonded but `needed` is required.
    error StakingInsufficientStake(address operator, uint256 stake, uint256 needed);
    /// @notice The range [firstLayer, lastLayer) is empty or exceeds the variant's `numLayers`.
    error StakingBadLayerRange(uint16 firstLayer, uint16 lastLayer, uint16 numLayers);
    /// @notice The variant is unknown or retired.
    error StakingVariantInactive(VariantId variant);
    /// @notice The endpoint must be 1..maxLength bytes.
    error StakingBadEndpoint(uint256 length, uint256 maxLength);
    /// @notice `operator` already holds `current` and cannot take another role without deregistering.
    error StakingRoleConflict(address operator, Role current);
    /// @notice `operator` holds no role.
    error StakingNotRegistered(address operator);
    /// @notice `operator` asked to unbond `requested` but only `bonded` is bonded.
    error StakingUnbondExceedsBonded(address operator, uint256 requested, uint256 bonded);
    /// @notice `operator`'s unbonding stake is withdrawable only from `readyAt`; it is `nowTs`.
    error StakingUnbondingNotReady(address operator, uint64 readyAt, uint64 nowTs);
    /// @notice `operator` has nothing unbonding.
    error StakingNothingToWithdraw(address operator);
    /// @notice `operator`'s stake is frozen by open disputes: `locked` of `total`.
    error StakingStakeLocked(address operator, uint256 locked, uint256 total);
    /// @notice Locking `amount` more would freeze more than `operator`'s `total` stake.
    error StakingLockExceedsStake(address operator, uint256 amount, uint256 locked, uint256 total);
    /// @notice Unlocking `amount` exceeds what is `locked`.
    error StakingUnlockExceedsLocked(address operator, uint256 amount, uint256 locked);
    /// @notice The unbonding delay `unbondingDelay` must exceed challenge window + longest dispute (`needed`).
    error StakingUnbondingTooShort(uint64 unbondingDelay, uint64 needed);

    event StakeDeposited(address indexed operator, uint256 amount);
    event ServerRegistered(
        address indexed operator,
        VariantId indexed variant,
        uint16 firstLayer,
        uint16 lastLayer,
        uint256 pricePerToken,
        string endpoint
    );
    event VerifierRegistered(address indexed operator);
    event Deregistered(address indexed operator, Role role);
    event UnbondRequested(address indexed operator, uint256 amount, uint64 readyAt);
    event Withdrawn(address indexed operator, uint256 amount);
    event Slashed(address indexed operator, uint256 amount, address indexed beneficiary);
    event StakeLocked(address indexed operator, uint256 amount, uint256 locked);
    event StakeUnlocked(address indexed operator, uint256 amount, uint256 locked);
    event TimingSet(Timing timing);
    event StakeParamsSet(StakeParams params);
    event TrustSourceSet(address trust);

    /// @notice Pulls `amount` tokens from the caller into its bonded stake.
    function deposit(uint256 amount) external;

    /// @notice Like `deposit`, with an EIP-2612 permit for the token so it takes one transaction.
    function depositWithPermit(uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s) external;

    /// @notice Registers the caller as a server, or updates its registration: the variant must be
    ///         active, `firstLayer < lastLayer <= numLayers`, and bonded stake must cover
    ///         `minServerStake(lastLayer - firstLayer)`.
    function registerServer(
        VariantId variant,
        uint16 firstLayer,
        uint16 lastLayer,
        string calldata endpoint,
        uint256 pricePerToken
    ) external;

    /// @notice Registers the caller as a verifier; bonded stake must cover `verifierMinStake`.
    function registerVerifier() external;

    /// @notice Drops the caller's role; its stake stays bonded until it requests unbonding.
    function deregister() external;

    /// @notice Moves `amount` from bonded to unbonding, withdrawable after `unbondingDelay`. A
    ///         registered operator must keep its minimum bonded. A new request restarts the delay
    ///         for the whole unbonding amount.
    function requestUnbond(uint256 amount) external;

    /// @notice Withdraws the caller's unbonding stake once its delay passed, except what open disputes lock.
    function withdraw() external returns (uint256 amount);

    /// @notice Freezes `amount` of `operator`'s stake for an open dispute. Only SLASHER_ROLE.
    function lock(address operator, uint256 amount) external;

    /// @notice Releases `amount` of `operator`'s frozen stake. Only SLASHER_ROLE.
    function unlock(address operator, uint256 amount) external;

    /// @notice Takes up to `amount` of `operator`'s stake (bonded first, then unbonding) and sends it to
    ///         `beneficiary`. Returns what was taken. Only SLASHER_ROLE.
    function slash(address operator, uint256 amount, address beneficiary) external returns (uint256 slashed);

    /// @notice Sets the timing parameters. Only GOVERNANCE_ROLE.
    function setTiming(Timing calldata timing) external;

    /// @notice Sets the minimum stakes. Only GOVERNANCE_ROLE.
    function setStakeParams(StakeParams calldata params) external;

    /// @notice Sets the trust-score contract read by `servers`. Only GOVERNANCE_ROLE.
    function setTrustSource(address trust) external;

    function operator(address account) external view returns (Operator memory);

    function server(address account) external view returns (Server memory);

    function timing() external view returns (Timing memory);

    function stakeParams() external view returns (StakeParams memory);

    /// @notice Sum of all bonded and unbonding stake.
    function totalStaked() external view returns (uint256);

    /// @notice Minimum bonded stake to serve `numLayers` layers.
    function minServerStake(uint256 numLayers) external view returns (uint256);

    /// @notice True when `account` is registered as a server and its bonded stake covers its range.
    function isActiveServer(address account) external view returns (bool);

    /// @notice True when `account` is an active server and its model variant is not retired: it may take new clients.
    function isServing(address account) external view returns (bool);

    /// @notice True when `account` is registered as a verifier and its bonded stake covers the minimum.
    function isActiveVerifier(address account) external view returns (bool);

    /// @notice Number of servers registered for `variant`.
    function serverCount(VariantId variant) external view returns (uint256);

    /// @notice Servers of `variant`, `limit` of them from `offset`, with what a client needs to route.
    function servers(VariantId variant, uint256 offset, uint256 limit) external view returns (ServerInfo[] memory);
}
