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
        if (op.bonded < needed) revert StakingInsufficientStake(msg.sender, op.bonded, needed);

        if (op.role == Role.Server) {
            _serversByVariant[_servers[msg.sender].variant].remove(msg.sender);
        }
        op.role = Role.Server;
        _servers[msg.sender] = Server({
            variant: variant,
            firstLayer: firstLayer,
            lastLayer: lastLayer,
            pricePerToken: pricePerToken,
            endpoint: endpoint
        });
        _serversByVariant[variant].add(msg.sender);
        emit ServerRegistered(msg.sender, variant, firstLayer, lastLayer, pricePerToken, endpoint);
    }

    /// @inheritdoc IStaking
    function registerVerifier() external {
        Operator storage op = _operators[msg.sender];
        if (op.role != Role.None) revert StakingRoleConflict(msg.sender, op.role);
        uint256 needed = _stakeParams.verifierMinStake;
        if (op.bonded < needed) revert StakingInsufficientStake(msg.sender, op.bonded, needed);
        op.role = Role.Verifier;
        emit VerifierRegistered(msg.sender);
    }

    /// @inheritdoc IStaking
    function deregister() external {
        Operator storage op = _operators[msg.sender];
        Role role = op.role;
        if (role == Role.None) revert StakingNotRegistered(msg.sender);
        if (role == Role.Server) {
            _serversByVariant[_servers[msg.sender].variant].remove(msg.sender);
            delete _servers[msg.sender];
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
        op.unbondReadyAt = readyAt;
        emit UnbondRequested(msg.sender, amount, readyAt);
    }

    /// @inheritdoc IStaking
    function withdraw() external returns (uint256 amount) {
        Operator storage op = _operators[msg.sender];
        if (op.unbonding == 0) revert StakingNothingToWithdraw(msg.sender);
        if (block.timestamp < op.unbondReadyAt) {
            revert StakingUnbondingNotReady(msg.sender, op.unbondReadyAt, uint64(block.timestamp));
        }
        uint256 total = op.bonded + op.unbonding;
        uint256 free = total - op.locked; // locked <= total is kept by lock() and _moveStake()
        amount = op.unbonding < free ? op.unbonding : free;
        if (amount == 0) revert StakingStakeLocked(msg.sender, op.locked, total);
        _moveStake(msg.sender, Bucket.Unbonding, Bucket.External, amount, msg.sender);
        emit Withdrawn(msg.sender, amount);
    }

    // ---------------------------------------------------------------- dispute hooks

    /// @inheritdoc IStaking
    function lock(address account, uint256 amount) external onlyRole(SLASHER_ROLE) {
        if (amount == 0) revert StakingZeroAmount();
        Operator storage op = _operators[account];
        uint256 total = op.bonded + op.unbonding;
        if (op.locked + amount > total) revert StakingLockExceedsStake(account, amount, op.locked, total);
        op.locked += amount;
        emit StakeLocked(account, amount, op.locked);
    }

    /// @inheritdoc IStaking
    function unlock(address account, uint256 amount) external onlyRole(SLASHER_ROLE) {
        if (amount == 0) revert StakingZeroAmount();
        Operator storage op = _operators[account];
        if (amount > op.locked) revert StakingUnlockExceedsLocked(account, amount, op.locked);
        op.locked -= amount;
        emit StakeUnlocked(account, amount, op.locked);
    }

    /// @inheritdoc IStaking
    function slash(
        address account,
        uint256 amount,
        address beneficiary
    ) external onlyRole(SLASHER_ROLE) returns (uint256 slashed) {
        if (amount == 0) revert StakingZeroAmount();
        if (beneficiary == address(0)) revert StakingZeroAddress();
        Operator storage op = _operators[account];
        uint256 fromBonded = amount < op.bonded ? amount : op.bonded;
        uint256 rest = amount - fromBonded;
        uint256 fromUnbonding = rest < op.unbonding ? rest : op.unbonding;
        slashed = fromBonded + fromUnbonding;
        if (slashed == 0) revert StakingInsufficientStake(account, 0, amount);
        if (fromBonded != 0) _moveStake(account, Bucket.Bonded, Bucket.External, fromBonded, beneficiary);
        if (fromUnbonding != 0) _moveStake(account, Bucket.Unbonding, Bucket.External, fromUnbonding, beneficiary);
        emit Slashed(account, slashed, beneficiary);
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
    function isActiveServer(address account) public view returns (bool) {
        Operator storage op = _operators[account];
        return op.role == Role.Server && op.bonded >= _requiredStake(account);
    }

    /// @inheritdoc IStaking
    function isServing(address account) external view returns (bool) {
        return isActiveServer(account) && registry.isActive(_servers[account].variant);
    }

    /// @inheritdoc IStaking
    function isActiveVerifier(address account) external view returns (bool) {
        Operator storage op = _operators[account];
        return op.role == Role.Verifier && op.bonded >= _stakeParams.verifierMinStake;
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
    ///      `_totalStaked == Σ (bonded + unbonding)` and `locked <= bonded + unbonding`.
    function _moveStake(address account, Bucket from, Bucket to, uint256 amount, address party) private {
        Operator storage op = _operators[account];
        if (from == Bucket.Bonded) op.bonded -= amount;
        else if (from == Bucket.Unbonding) op.unbonding -= amount;
        else _totalStaked += amount;

        if (to == Bucket.Bonded) op.bonded += amount;
        else if (to == Bucket.Unbonding) op.unbonding += amount;
        else _totalStaked -= amount;

        // A slash can shrink stake below what disputes locked; a lock never covers more than exists.
        uint256 total = op.bonded + op.unbonding;
        if (op.locked > total) op.locked = total;

        if (from == Bucket.External) token.safeTransferFrom(party, address(this), amount);
        else if (to == Bucket.External) token.safeTransfer(party, amount);
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
        _timing = t;
        emit TimingSet(t);
    }

    function _setStakeParams(StakeParams memory p) private {
        _stakeParams = p;
        emit StakeParamsSet(p);
    }
}
