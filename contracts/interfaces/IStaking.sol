// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {VariantId} from "./IModelRegistry.sol";

/// @title Staking for servers and verifiers
/// @notice Operators deposit stake, register as a server (for a layer range of one model variant) or
///         as a verifier, and leave through an unbonding delay longer than the challenge window plus
///         the longest dispute, so that any work they committed can still be challenged and slashed.
/// @dev Every stake balance change (deposit, unbond, withdraw, slash) goes through one internal
///      function, so `totalStaked() == Σ (bonded + unbonding)` holds in one place. Disputes freeze
///      stake through named locks: each lock belongs to the slasher that took it and to one id (a
///      dispute), a slash takes only from its own lock, and `locked == Σ open locks <= bonded + unbonding`
///      always holds, so one dispute's slash or unlock never frees or breaks another's.
///
///      Timing is never retroactive in the dangerous direction: a withdrawal is ready only once the
///      delay recorded at the request, the current delay counted from the request, and the latest
///      challenge deadline of the operator's committed batches have all passed.
///
///      Eligibility (θ on chain): `isEligible` is what PaymentChannels checks before a client may open
///      a channel to a server. Registration itself is not gated on trust (a newcomer must be able to
///      join), but a newly registered server is not eligible before `probationPeriod` has passed, so a
///      caught server cannot shed its record by re-registering under a fresh key and take clients at once.
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
        /// @dev Σ of this operator's open locks; never withdrawable, never counted as collateral.
        uint256 locked;
        /// @dev When the latest unbond request was made (unix seconds).
        uint64 unbondRequestedAt;
        /// @dev requestedAt + the unbonding delay in force at the request. See `withdrawableAt` for
        ///      the effective time.
        uint64 unbondReadyAt;
        /// @dev Latest challenge deadline of the batches this operator committed (unix seconds).
        uint64 slashableUntil;
        Role role;
    }

    /// @notice A server's current registration, as clients route to it.
    struct Server {
        VariantId variant;
        /// @dev First layer served.
        uint16 firstLayer;
        /// @dev One past the last layer served (exclusive).
        uint16 lastLayer;
        /// @dev Id of the registration record (see `registration`); 0 when not a server.
        uint64 registrationId;
        /// @dev When the operator became a server (kept across updates, reset by deregister).
        uint64 serverSince;
        /// @dev Price per token, in token base units.
        uint256 pricePerToken;
        /// @dev WebSocket URL clients connect to.
        string endpoint;
    }

    /// @notice One registration of a server to a variant and layer range. Never deleted: batches
    ///         committed under it keep pointing at it after the server re-registers or leaves.
    struct Registration {
        address operator;
        uint16 firstLayer;
        uint16 lastLayer;
        /// @dev When it began (unix seconds).
        uint64 registeredAt;
        VariantId variant;
        /// @dev When it ended (re-registration to another variant/range, or deregister); 0 while current.
        uint64 endedAt;
    }

    /// @notice A dispute's frozen share of one operator's stake.
    struct Lock {
        address operator;
        /// @dev What is still frozen (a slash takes from it).
        uint256 amount;
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
        /// @dev True when bonded stake not frozen by disputes still covers the minimum for the range.
        bool collateralized;
        /// @dev True when `isEligible`: clients may open channels to it.
        bool eligible;
        string endpoint;
    }

    struct Timing {
        /// @dev Seconds after a commitment batch is posted during which it can be challenged.
        uint64 challengeWindow;
        /// @dev Longest a dispute can stay open, seconds.
        uint64 maxDisputeDuration;
        /// @dev Seconds between an unbond request and its withdrawal; must exceed the two above.
        uint64 unbondingDelay;
        /// @dev Seconds a new server waits after registering before it is eligible for channels.
        uint64 probationPeriod;
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
    /// @notice `operator` has `stake` bonded (free of locks) but `needed` is required.
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
    /// @notice The caller already holds a lock with this id.
    error StakingLockExists(address slasher, bytes32 lockId);
    /// @notice The caller holds no lock with this id.
    error StakingUnknownLock(address slasher, bytes32 lockId);
    /// @notice Slashing `amount` exceeds the `locked` amount of the lock `lockId`.
    error StakingSlashExceedsLock(bytes32 lockId, uint256 amount, uint256 locked);
    /// @notice The unbonding delay `unbondingDelay` must exceed challenge window + longest dispute (`needed`).
    error StakingUnbondingTooShort(uint64 unbondingDelay, uint64 needed);
    /// @notice The probation period must be positive: without it a fresh key is eligible at once.
    error StakingZeroProbation();
    /// @notice No registration has this id.
    error StakingUnknownRegistration(uint64 registrationId);

    event StakeDeposited(address indexed operator, uint256 amount);
    event ServerRegistered(
        address indexed operator,
        VariantId indexed variant,
        uint64 indexed registrationId,
        uint16 firstLayer,
        uint16 lastLayer,
        uint256 pricePerToken,
        string endpoint
    );
    event RegistrationEnded(uint64 indexed registrationId, address indexed operator);
    event VerifierRegistered(address indexed operator);
    event Deregistered(address indexed operator, Role role);
    event UnbondRequested(address indexed operator, uint256 amount, uint64 readyAt);
    event Withdrawn(address indexed operator, uint256 amount);
    event Slashed(address indexed operator, bytes32 indexed lockId, uint256 amount, address indexed beneficiary);
    event StakeLocked(address indexed operator, bytes32 indexed lockId, address slasher, uint256 amount, uint256 locked);
    event StakeUnlocked(address indexed operator, bytes32 indexed lockId, address slasher, uint256 amount, uint256 locked);
    event TimingSet(Timing timing);
    event StakeParamsSet(StakeParams params);
    event TrustSourceSet(address trust);

    /// @notice Pulls `amount` tokens from the caller into its bonded stake.
    function deposit(uint256 amount) external;

    /// @notice Like `deposit`, with an EIP-2612 permit for the token so it takes one transaction.
    function depositWithPermit(uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s) external;

    /// @notice Registers the caller as a server, or updates its registration: the variant must be
    ///         active, `firstLayer < lastLayer <= numLayers`, and bonded stake free of locks must cover
    ///         `minServerStake(lastLayer - firstLayer)`. A change of variant or range ends the current
    ///         registration record and starts a new one; a change of price or endpoint only keeps it.
    function registerServer(
        VariantId variant,
        uint16 firstLayer,
        uint16 lastLayer,
        string calldata endpoint,
        uint256 pricePerToken
    ) external;

    /// @notice Registers the caller as a verifier; bonded stake free of locks must cover `verifierMinStake`.
    function registerVerifier() external;

    /// @notice Drops the caller's role; its stake stays bonded until it requests unbonding. A server's
    ///         registration record is ended, not erased.
    function deregister() external;

    /// @notice Moves `amount` from bonded to unbonding. A registered operator must keep its minimum
    ///         bonded. A new request restarts the delay for the whole unbonding amount.
    function requestUnbond(uint256 amount) external;

    /// @notice Withdraws the caller's unbonding stake from `withdrawableAt`, except what open locks freeze.
    function withdraw() external returns (uint256 amount);

    /// @notice Freezes `amount` of `operator`'s stake under the caller's lock `lockId` (one per
    ///         dispute). Only SLASHER_ROLE.
    function lock(address operator, bytes32 lockId, uint256 amount) external;

    /// @notice Releases what remains of the caller's lock `lockId` and deletes it. Returns the amount
    ///         released. Only SLASHER_ROLE.
    function unlock(bytes32 lockId) external returns (uint256 released);

    /// @notice Takes `amount` out of the caller's lock `lockId` (bonded stake first, then unbonding)
    ///         and sends it to `beneficiary`. The lock stays open with the rest. Only SLASHER_ROLE.
    function slash(bytes32 lockId, uint256 amount, address beneficiary) external;

    /// @notice Records that `server` committed a batch challengeable until `challengeDeadline`: no
    ///         withdrawal is ready before it. Only COMMITMENTS_ROLE.
    function noteCommitment(address server, uint64 challengeDeadline) external;

    /// @notice Sets the timing parameters. Only GOVERNANCE_ROLE.
    function setTiming(Timing calldata timing) external;

    /// @notice Sets the minimum stakes. Only GOVERNANCE_ROLE.
    function setStakeParams(StakeParams calldata params) external;

    /// @notice Sets the trust-score contract read by `servers` and `isEligible`. Only GOVERNANCE_ROLE.
    function setTrustSource(address trust) external;

    function operator(address account) external view returns (Operator memory);

    function server(address account) external view returns (Server memory);

    /// @notice The work `account` is currently registered for (registrationId 0 when not a server),
    ///         without the endpoint: what Commitments checks on every batch.
    function serverRegistration(address account)
        external
        view
        returns (uint64 registrationId, VariantId variant, uint16 firstLayer, uint16 lastLayer);

    /// @notice Registration record `registrationId` (ids start at 1).
    function registration(uint64 registrationId) external view returns (Registration memory);

    /// @notice Number of server registrations ever made.
    function registrationCount() external view returns (uint256);

    /// @notice The lock `lockId` of `slasher` (operator zero when none).
    function lockOf(address slasher, bytes32 lockId) external view returns (Lock memory);

    /// @notice When `account`'s unbonding stake becomes withdrawable: the latest of the delay at the
    ///         request, the current delay counted from the request, and its latest challenge deadline.
    function withdrawableAt(address account) external view returns (uint64);

    function timing() external view returns (Timing memory);

    function stakeParams() external view returns (StakeParams memory);

    /// @notice Sum of all bonded and unbonding stake.
    function totalStaked() external view returns (uint256);

    /// @notice Minimum bonded stake to serve `numLayers` layers.
    function minServerStake(uint256 numLayers) external view returns (uint256);

    /// @notice Bonded stake not frozen by locks (locks count against bonded stake first).
    function freeBonded(address account) external view returns (uint256);

    /// @notice True when `account` is registered as a server and its free bonded stake covers its range.
    function isActiveServer(address account) external view returns (bool);

    /// @notice True when `account` is an active server and its model variant is not retired.
    function isServing(address account) external view returns (bool);

    /// @notice True when `account` is serving, past its probation, and its trust is at least θ: what a
    ///         channel needs to open. False while no trust source is set.
    function isEligible(address account) external view returns (bool);

    /// @notice True when `account` is registered as a verifier and its bonded stake covers the minimum.
    ///         Locks do not count against it: a verifier sitting on a committee stays active (it must
    ///         fetch the data it votes on); Disputes checks a candidate's free stake before each seat.
    function isActiveVerifier(address account) external view returns (bool);

    /// @notice Number of registered verifiers (the pool dispute committees are drawn from).
    function verifierCount() external view returns (uint256);

    /// @notice The `index`-th registered verifier (order changes when one deregisters).
    function verifierAt(uint256 index) external view returns (address);

    /// @notice Number of servers registered for `variant`.
    function serverCount(VariantId variant) external view returns (uint256);

    /// @notice Servers of `variant`, `limit` of them from `offset`, with what a client needs to route.
    function servers(VariantId variant, uint256 offset, uint256 limit) external view returns (ServerInfo[] memory);
}
