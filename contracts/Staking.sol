// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";
import {IModelRegistry, VariantId} from "./interfaces/IModelRegistry.sol";
import {IStaking} from "./interfaces/IStaking.sol";
import {ITrustScores} from "./interfaces/ITrustScores.sol";

/// @title Staking for servers and verifiers
/// @notice See {IStaking}.
contract Staking is IStaking, AccessControl {
    using SafeERC20 for IERC20;
    using EnumerableSet for EnumerableSet.AddressSet;

    /// @notice Role of the dispute logic: may lock, unlock and slash stake.
    bytes32 public constant SLASHER_ROLE = keccak256("SLASHER_ROLE");
    /// @notice Role of the Commitments contract: extends how long a server's stake stays slashable.
    bytes32 public constant COMMITMENTS_ROLE = keccak256("COMMITMENTS_ROLE");
    /// @notice Role allowed to change parameters.
    bytes32 public constant GOVERNANCE_ROLE = keccak256("GOVERNANCE_ROLE");
    /// @notice Longest endpoint URL accepted, in bytes.
    uint256 public constant MAX_ENDPOINT_LENGTH = 256;

    /// @dev Where a unit of stake sits. `External` is outside this contract (a wallet).
    enum Bucket {
        External,
        Bonded,
        Unbonding
    }

    IERC20 public immutable token;
    IModelRegistry public immutable registry;
    ITrustScores public trustSource;

    mapping(address account => Operator) private _operators;
    mapping(address account => Server) private _servers;
    mapping(VariantId variant => EnumerableSet.AddressSet) private _serversByVariant;
    EnumerableSet.AddressSet private _verifiers;
    /// @dev Registration records; index 0 is unused so that id 0 means "none".
    Registration[] private _registrations;
    /// @dev keccak256(abi.encode(slasher, lockId)) => lock: each slasher's ids are its own.
    mapping(bytes32 key => Lock) private _locks;
    uint256 private _totalStaked;
    Timing private _timing;
    StakeParams private _stakeParams;

    constructor(
        address admin,
        IERC20 token_,
        IModelRegistry registry_,
        Timing memory timing_,
        StakeParams memory stakeParams_
    ) {
        if (admin == address(0) || address(token_) == address(0) || address(registry_) == address(0)) {
            revert StakingZeroAddress();
        }
        token = token_;
        registry = registry_;
        _registrations.push(); // id 0: none
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(GOVERNANCE_ROLE, admin);
        _setTiming(timing_);
        _setStakeParams(stakeParams_);
    }

    // ---------------------------------------------------------------- operator actions

    /// @inheritdoc IStaking
    function deposit(uint256 amount) external {
        _deposit(amount);
    }

    /// @inheritdoc IStaking
    function depositWithPermit(uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s) external {
        // A front-runner may have used the permit already; the allowance then exists and the
        // transferFrom below still succeeds, so a failed permit is not fatal by itself.
        try IERC20Permit(address(token)).permit(msg.sender, address(this), amount, deadline, v, r, s) {} catch {}
        _deposit(amount);
    }

    /// @inheritdoc IStaking
    function registerServer(
        VariantId variant,
        uint16 firstLayer,
        uint16 lastLayer,
        string calldata endpoint,
        uint256 pricePerToken
    ) external {
        Operator storage op = _operators[msg.sender];
        if (op.role == Role.Verifier) revert StakingRoleConflict(msg.sender, op.role);
        _checkServerTerms(variant, firstLayer, lastLayer, endpoint);

        Server storage s = _servers[msg.sender];
        uint64 registrationId = s.registrationId;
        bool sameWork = op.role == Role.Server &&
            VariantId.unwrap(s.variant) == VariantId.unwrap(variant) &&
            s.firstLayer == firstLayer &&
            s.lastLayer == lastLayer;
        if (!sameWork) {
            if (op.role == Role.Server) {
                _serversByVariant[s.variant].remove(msg.sender);
                _endRegistration(msg.sender, registrationId);
            } else {
                s.serverSince = uint64(block.timestamp);
            }
            registrationId = _newRegistration(variant, firstLayer, lastLayer);
            s.variant = variant;
            s.firstLayer = firstLayer;
            s.lastLayer = lastLayer;
            s.registrationId = registrationId;
            _serversByVariant[variant].add(msg.sender);
        }
        op.role = Role.Server;
        s.pricePerToken = pricePerToken;
        s.endpoint = endpoint;
        emit ServerRegistered(msg.sender, variant, registrationId, firstLayer, lastLayer, pricePerToken, endpoint);
    }

    /// @inheritdoc IStaking
    function registerVerifier() external {
        Operator storage op = _operators[msg.sender];
        if (op.role != Role.None) revert StakingRoleConflict(msg.sender, op.role);
        uint256 needed = _stakeParams.verifierMinStake;
        uint256 free = freeBonded(msg.sender);
        if (free < needed) revert StakingInsufficientStake(msg.sender, free, needed);
        op.role = Role.Verifier;
        _verifiers.add(msg.sender);
        emit VerifierRegistered(msg.sender);
    }

    /// @inheritdoc IStaking
    function deregister() external {
        Operator storage op = _operators[msg.sender];
        Role role = op.role;
        if (role == Role.None) revert StakingNotRegistered(msg.sender);
        if (role == Role.Server) {
            Server storage s = _servers[msg.sender];
            _serversByVariant[s.variant].remove(msg.sender);
            _endRegistration(msg.sender, s.registrationId);
            delete _servers[msg.sender];
        } else {
            _verifiers.remove(msg.sender);
        }
        op.role = Role.None;
        emit Deregistered(msg.sender, role);
    }

    /// @inheritdoc IStaking
    function requestUnbond(uint256 amount) external {
        if (amount == 0) revert StakingZeroAmount();
        Operator storage op = _operators[msg.sender];
        if (amount > op.bonded) revert StakingUnbondExceedsBonded(msg.sender, amount, op.bonded);
        uint256 needed = _requiredStake(msg.sender);
        if (op.bonded - amount < needed) revert StakingInsufficientStake(msg.sender, op.bonded - amount, needed);

        _moveStake(msg.sender, Bucket.Bonded, Bucket.Unbonding, amount, address(0));
        uint64 readyAt = uint64(block.timestamp) + _timing.unbondingDelay;
        op.unbondRequestedAt = uint64(block.timestamp);
        op.unbondReadyAt = readyAt;
        emit UnbondRequested(msg.sender, amount, readyAt);
    }

    /// @inheritdoc IStaking
    function withdraw() external returns (uint256 amount) {
        Operator storage op = _operators[msg.sender];
        if (op.unbonding == 0) revert StakingNothingToWithdraw(msg.sender);
        uint64 readyAt = withdrawableAt(msg.sender);
        if (block.timestamp < readyAt) revert StakingUnbondingNotReady(msg.sender, readyAt, uint64(block.timestamp));
        uint256 total = op.bonded + op.unbonding;
        uint256 free = total - op.locked; // locked <= total is kept by lock() and _moveStake()
        amount = op.unbonding < free ? op.unbonding : free;
        if (amount == 0) revert StakingStakeLocked(msg.sender, op.locked, total);
        _moveStake(msg.sender, Bucket.Unbonding, Bucket.External, amount, msg.sender);
        emit Withdrawn(msg.sender, amount);
    }

    // ---------------------------------------------------------------- dispute and commitment hooks

    /// @inheritdoc IStaking
    function lock(address account, bytes32 lockId, uint256 amount) external onlyRole(SLASHER_ROLE) {
        if (amount == 0) revert StakingZeroAmount();
        if (account == address(0)) revert StakingZeroAddress();
        Lock storage held = _locks[_lockKey(msg.sender, lockId)];
        if (held.operator != address(0)) revert StakingLockExists(msg.sender, lockId);
        Operator storage op = _operators[account];
        uint256 total = op.bonded + op.unbonding;
        if (op.locked + amount > total) revert StakingLockExceedsStake(account, amount, op.locked, total);
        held.operator = account;
        held.amount = amount;
        op.locked += amount;
        emit StakeLocked(account, lockId, msg.sender, amount, op.locked);
    }

    /// @inheritdoc IStaking
    function unlock(bytes32 lockId) external onlyRole(SLASHER_ROLE) returns (uint256 released) {
        bytes32 key = _lockKey(msg.sender, lockId);
        Lock storage held = _locks[key];
        address account = held.operator;
        if (account == address(0)) revert StakingUnknownLock(msg.sender, lockId);
        released = held.amount;
        Operator storage op = _operators[account];
        // Σ open locks == op.locked, and this lock is one of them: no underflow.
        op.locked -= released;
        delete _locks[key];
        emit StakeUnlocked(account, lockId, msg.sender, released, op.locked);
    }

    /// @inheritdoc IStaking
    function slash(bytes32 lockId, uint256 amount, address beneficiary) external onlyRole(SLASHER_ROLE) {
        if (amount == 0) revert StakingZeroAmount();
        if (beneficiary == address(0)) revert StakingZeroAddress();
        Lock storage held = _locks[_lockKey(msg.sender, lockId)];
        address account = held.operator;
        if (account == address(0)) revert StakingUnknownLock(msg.sender, lockId);
        if (amount > held.amount) revert StakingSlashExceedsLock(lockId, amount, held.amount);
        Operator storage op = _operators[account];
        // The lock shrinks with the stake it froze, so every other lock stays fully backed.
        held.amount -= amount;
        op.locked -= amount;
        // amount <= op.locked (before) <= bonded + unbonding, so the two parts cover it.
        uint256 fromBonded = amount < op.bonded ? amount : op.bonded;
        if (fromBonded != 0) _moveStake(account, Bucket.Bonded, Bucket.External, fromBonded, beneficiary);
        if (amount != fromBonded) {
            _moveStake(account, Bucket.Unbonding, Bucket.External, amount - fromBonded, beneficiary);
        }
        emit Slashed(account, lockId, amount, beneficiary);
    }

    /// @inheritdoc IStaking
    function noteCommitment(address account, uint64 challengeDeadline) external onlyRole(COMMITMENTS_ROLE) {
        Operator storage op = _operators[account];
        if (challengeDeadline > op.slashableUntil) op.slashableUntil = challengeDeadline;
    }

    // ---------------------------------------------------------------- governance

    /// @inheritdoc IStaking
    function setTiming(Timing calldata timing_) external onlyRole(GOVERNANCE_ROLE) {
        _setTiming(timing_);
    }

    /// @inheritdoc IStaking
    function setStakeParams(StakeParams calldata params_) external onlyRole(GOVERNANCE_ROLE) {
        _setStakeParams(params_);
    }

    /// @inheritdoc IStaking
    function setTrustSource(address trust) external onlyRole(GOVERNANCE_ROLE) {
        trustSource = ITrustScores(trust);
        emit TrustSourceSet(trust);
    }

    // ---------------------------------------------------------------- reads

    /// @inheritdoc IStaking
    function operator(address account) external view returns (Operator memory) {
        return _operators[account];
    }

    /// @inheritdoc IStaking
    function server(address account) external view returns (Server memory) {
        return _servers[account];
    }

    /// @inheritdoc IStaking
    function serverRegistration(address account)
        external
        view
        returns (uint64 registrationId, VariantId variant, uint16 firstLayer, uint16 lastLayer)
    {
        Server storage s = _servers[account];
        return (s.registrationId, s.variant, s.firstLayer, s.lastLayer);
    }

    /// @inheritdoc IStaking
    function registration(uint64 registrationId) external view returns (Registration memory) {
        if (registrationId == 0 || registrationId >= _registrations.length) {
            revert StakingUnknownRegistration(registrationId);
        }
        return _registrations[registrationId];
    }

    /// @inheritdoc IStaking
    function registrationCount() external view returns (uint256) {
        return _registrations.length - 1;
    }

    /// @inheritdoc IStaking
    function lockOf(address slasher, bytes32 lockId) external view returns (Lock memory) {
        return _locks[_lockKey(slasher, lockId)];
    }

    /// @inheritdoc IStaking
    function withdrawableAt(address account) public view returns (uint64 readyAt) {
        Operator storage op = _operators[account];
        readyAt = op.unbondReadyAt;
        uint64 underCurrentRule = op.unbondRequestedAt + _timing.unbondingDelay;
        if (underCurrentRule > readyAt) readyAt = underCurrentRule;
        if (op.slashableUntil > readyAt) readyAt = op.slashableUntil;
    }

    /// @inheritdoc IStaking
    function timing() external view returns (Timing memory) {
        return _timing;
    }

    /// @inheritdoc IStaking
    function stakeParams() external view returns (StakeParams memory) {
        return _stakeParams;
    }

    /// @inheritdoc IStaking
    function totalStaked() external view returns (uint256) {
        return _totalStaked;
    }

    /// @inheritdoc IStaking
    function minServerStake(uint256 numLayers) public view returns (uint256) {
        return _stakeParams.serverBaseStake + _stakeParams.serverStakePerLayer * numLayers;
    }

    /// @inheritdoc IStaking
    function freeBonded(address account) public view returns (uint256) {
        Operator storage op = _operators[account];
        return op.bonded > op.locked ? op.bonded - op.locked : 0;
    }

    /// @inheritdoc IStaking
    function isActiveServer(address account) public view returns (bool) {
        return _operators[account].role == Role.Server && freeBonded(account) >= _requiredStake(account);
    }

    /// @inheritdoc IStaking
    function isServing(address account) public view returns (bool) {
        return isActiveServer(account) && registry.isActive(_servers[account].variant);
    }

    /// @inheritdoc IStaking
    function isEligible(address account) public view returns (bool) {
        ITrustScores trust = trustSource;
        if (address(trust) == address(0) || !isServing(account)) return false;
        if (block.timestamp < uint256(_servers[account].serverSince) + _timing.probationPeriod) return false;
        return trust.isTrusted(account);
    }

    /// @inheritdoc IStaking
    function isActiveVerifier(address account) external view returns (bool) {
        Operator storage op = _operators[account];
        return op.role == Role.Verifier && op.bonded >= _stakeParams.verifierMinStake;
    }

    /// @inheritdoc IStaking
    function verifierCount() external view returns (uint256) {
        return _verifiers.length();
    }

    /// @inheritdoc IStaking
    function verifierAt(uint256 index) external view returns (address) {
        return _verifiers.at(index);
    }

    /// @inheritdoc IStaking
    function serverCount(VariantId variant) external view returns (uint256) {
        return _serversByVariant[variant].length();
    }

    /// @inheritdoc IStaking
    function servers(VariantId variant, uint256 offset, uint256 limit) external view returns (ServerInfo[] memory page) {
        EnumerableSet.AddressSet storage set = _serversByVariant[variant];
        uint256 total = set.length();
        if (offset >= total) return new ServerInfo[](0);
        uint256 end = total - offset < limit ? total : offset + limit;
        page = new ServerInfo[](end - offset);
        ITrustScores trust = trustSource;
        for (uint256 i = offset; i < end; ++i) {
            address account = set.at(i);
            Server storage s = _servers[account];
            page[i - offset] = ServerInfo({
                operator: account,
                firstLayer: s.firstLayer,
                lastLayer: s.lastLayer,
                pricePerToken: s.pricePerToken,
                stake: _operators[account].bonded,
                trust: address(trust) == address(0) ? 0 : trust.trustOf(account),
                collateralized: isActiveServer(account),
                eligible: isEligible(account),
                endpoint: s.endpoint
            });
        }
    }

    // ---------------------------------------------------------------- internals

    function _deposit(uint256 amount) private {
        if (amount == 0) revert StakingZeroAmount();
        _moveStake(msg.sender, Bucket.External, Bucket.Bonded, amount, msg.sender);
        emit StakeDeposited(msg.sender, amount);
    }

    /// @dev The one place stake balances change. Moves `amount` of `account`'s stake from one bucket
    ///      to another; `External` means tokens enter from, or leave to, `party`. Keeps
    ///      `_totalStaked == Σ (bonded + unbonding)`; callers keep `locked <= bonded + unbonding`
    ///      (withdraw leaves locked stake in place, slash shrinks its lock first), checked here.
    function _moveStake(address account, Bucket from, Bucket to, uint256 amount, address party) private {
        Operator storage op = _operators[account];
        if (from == Bucket.Bonded) op.bonded -= amount;
        else if (from == Bucket.Unbonding) op.unbonding -= amount;
        else _totalStaked += amount;

        if (to == Bucket.Bonded) op.bonded += amount;
        else if (to == Bucket.Unbonding) op.unbonding += amount;
        else _totalStaked -= amount;

        uint256 total = op.bonded + op.unbonding;
        if (op.locked > total) revert StakingStakeLocked(account, op.locked, total);

        if (from == Bucket.External) token.safeTransferFrom(party, address(this), amount);
        else if (to == Bucket.External) token.safeTransfer(party, amount);
    }

    /// @dev Variant active, range inside it, endpoint length, and free stake covering the range.
    function _checkServerTerms(VariantId variant, uint16 firstLayer, uint16 lastLayer, string calldata endpoint)
        private
        view
    {
        if (!registry.isActive(variant)) revert StakingVariantInactive(variant);
        uint16 numLayers = registry.variant(variant).numLayers;
        if (firstLayer >= lastLayer || lastLayer > numLayers) {
            revert StakingBadLayerRange(firstLayer, lastLayer, numLayers);
        }
        uint256 endpointLength = bytes(endpoint).length;
        if (endpointLength == 0 || endpointLength > MAX_ENDPOINT_LENGTH) {
            revert StakingBadEndpoint(endpointLength, MAX_ENDPOINT_LENGTH);
        }
        uint256 needed = minServerStake(lastLayer - firstLayer);
        uint256 free = freeBonded(msg.sender);
        if (free < needed) revert StakingInsufficientStake(msg.sender, free, needed);
    }

    function _newRegistration(VariantId variant, uint16 firstLayer, uint16 lastLayer) private returns (uint64 id) {
        id = uint64(_registrations.length);
        _registrations.push(
            Registration({
                operator: msg.sender,
                firstLayer: firstLayer,
                lastLayer: lastLayer,
                registeredAt: uint64(block.timestamp),
                variant: variant,
                endedAt: 0
            })
        );
    }

    function _endRegistration(address account, uint64 registrationId) private {
        _registrations[registrationId].endedAt = uint64(block.timestamp);
        emit RegistrationEnded(registrationId, account);
    }

    function _lockKey(address slasher, bytes32 lockId) private pure returns (bytes32) {
        return keccak256(abi.encode(slasher, lockId));
    }

    /// @dev Bonded stake `account`'s current role requires.
    function _requiredStake(address account) private view returns (uint256) {
        Role role = _operators[account].role;
        if (role == Role.Server) {
            Server storage s = _servers[account];
            return minServerStake(s.lastLayer - s.firstLayer);
        }
        if (role == Role.Verifier) return _stakeParams.verifierMinStake;
        return 0;
    }

    function _setTiming(Timing memory t) private {
        uint64 needed = t.challengeWindow + t.maxDisputeDuration;
        if (t.unbondingDelay <= needed) revert StakingUnbondingTooShort(t.unbondingDelay, needed);
        if (t.probationPeriod == 0) revert StakingZeroProbation();
        _timing = t;
        emit TimingSet(t);
    }

    function _setStakeParams(StakeParams memory p) private {
        _stakeParams = p;
        emit StakeParamsSet(p);
    }
}
