// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EFedToken} from "../../../contracts/EFedToken.sol";
import {Staking} from "../../../contracts/Staking.sol";
import {IStaking} from "../../../contracts/interfaces/IStaking.sol";
import {VariantId} from "../../../contracts/interfaces/IModelRegistry.sol";
import {Cheats} from "./TestBase.sol";

/// @title Invariant handler for Staking
/// @notice Drives Staking with bounded random actions from three operators and one slasher, and keeps
///         ghost accounting the invariants compare against: what each operator deposited, withdrew and
///         lost to slashes, and when it last asked to unbond. It holds a pre-minted token float and
///         hands each operator exactly what it deposits, so an operator's wallet only ever holds what
///         it withdrew. Time is its own ghost clock, re-applied at the start of every action.
contract StakingHandler is Cheats {
    Staking public staking;
    EFedToken public token;
    VariantId public variant;
    uint16 public numLayers;
    address public slasher;
    address public beneficiary;
    uint64 public unbondingDelay;
    uint256 public constant MAX_DEPOSIT = 10_000e18;

    address[] internal _actors;
    uint256 public currentTime;

    mapping(address actor => uint256) public deposited;
    mapping(address actor => uint256) public withdrawn;
    mapping(address actor => uint256) public slashed;
    /// @dev Timestamp of the actor's last successful requestUnbond (0: never).
    mapping(address actor => uint256) public lastRequestAt;

    uint256 public totalDeposited;
    uint256 public totalWithdrawn;
    uint256 public totalSlashed;

    /// @dev Flips if a withdraw succeeded before lastRequestAt + unbondingDelay (or with no request).
    bool public earlyWithdraw;
    /// @dev Flips if a withdraw left less stake than was locked, or paid more than was unbonding.
    bool public lockedStakeWithdrawn;

    // Coverage counters (how often each path really ran).
    uint256 public withdrawals;
    uint256 public earlyWithdrawalsRejected;
    uint256 public slashes;
    uint256 public unbondRequests;

    constructor(
        Staking staking_,
        EFedToken token_,
        VariantId variant_,
        uint16 numLayers_,
        address slasher_,
        address beneficiary_,
        address[] memory actors_
    ) {
        staking = staking_;
        token = token_;
        variant = variant_;
        numLayers = numLayers_;
        slasher = slasher_;
        beneficiary = beneficiary_;
        unbondingDelay = staking_.timing().unbondingDelay;
        _actors = actors_;
        currentTime = block.timestamp;
    }

    modifier useTime() {
        vm.warp(currentTime);
        _;
    }

    function actors() external view returns (address[] memory) {
        return _actors;
    }

    function _actor(uint256 seed) internal view returns (address) {
        return _actors[seed % _actors.length];
    }

    // ------------------------------------------------------------ actions

    function warp(uint256 secondsAhead) external {
        // Up to a little more than the unbonding delay: withdrawals get tried both early and late.
        currentTime += bound(secondsAhead, 0, 8 days);
        vm.warp(currentTime);
    }

    /// @dev Jumps the clock to within two seconds of an actor's unbonding readyAt (never backwards),
    ///      so that withdrawals are tried right at the boundary.
    function warpNearReady(uint256 actorSeed, uint256 offset) external {
        uint256 requested = lastRequestAt[_actor(actorSeed)];
        if (requested == 0) return;
        uint256 target = requested + unbondingDelay - 2 + bound(offset, 0, 4);
        if (target > currentTime) currentTime = target;
        vm.warp(currentTime);
    }

    function deposit(uint256 actorSeed, uint256 amount) external useTime {
        address a = _actor(actorSeed);
        amount = bound(amount, 1, MAX_DEPOSIT);
        token.transfer(a, amount);
        vm.startPrank(a);
        token.approve(address(staking), amount);
        staking.deposit(amount);
        vm.stopPrank();
        deposited[a] += amount;
        totalDeposited += amount;
    }

    function registerServer(uint256 actorSeed, uint16 firstLayer, uint16 lastLayer) external useTime {
        address a = _actor(actorSeed);
        firstLayer = uint16(bound(firstLayer, 0, numLayers - 1));
        lastLayer = uint16(bound(lastLayer, firstLayer + 1, numLayers));
        vm.prank(a);
        try staking.registerServer(variant, firstLayer, lastLayer, "wss://handler", 1) {} catch {}
    }

    function registerVerifier(uint256 actorSeed) external useTime {
        vm.prank(_actor(actorSeed));
        try staking.registerVerifier() {} catch {}
    }

    function deregister(uint256 actorSeed) external useTime {
        vm.prank(_actor(actorSeed));
        try staking.deregister() {} catch {}
    }

    function requestUnbond(uint256 actorSeed, uint256 amount) external useTime {
        address a = _actor(actorSeed);
        uint256 bonded = staking.operator(a).bonded;
        amount = bound(amount, 1, bonded == 0 ? 1 : bonded);
        vm.prank(a);
        try staking.requestUnbond(amount) {
            lastRequestAt[a] = block.timestamp;
            ++unbondRequests;
        } catch {}
    }

    function withdraw(uint256 actorSeed) external useTime {
        _withdraw(_actor(actorSeed));
    }

    /// @dev Every operator tries to withdraw (most calls revert: not ready, nothing unbonding, locked).
    function withdrawAll() external useTime {
        for (uint256 i = 0; i < _actors.length; ++i) _withdraw(_actors[i]);
    }

    function _withdraw(address a) internal {
        IStaking.Operator memory before = staking.operator(a);
        vm.prank(a);
        try staking.withdraw() returns (uint256 amount) {
            if (lastRequestAt[a] == 0 || block.timestamp < lastRequestAt[a] + unbondingDelay) earlyWithdraw = true;
            if (amount > before.unbonding || before.bonded + before.unbonding - amount < before.locked) {
                lockedStakeWithdrawn = true;
            }
            withdrawn[a] += amount;
            totalWithdrawn += amount;
            ++withdrawals;
        } catch {
            if (before.unbonding != 0 && block.timestamp < lastRequestAt[a] + unbondingDelay) {
                ++earlyWithdrawalsRejected;
            }
        }
    }

    /// @dev Open locks (id and operator), and the ghost sum of each operator's open lock amounts.
    bytes32[] public openLocks;
    mapping(bytes32 lockId => address) public lockOperator;
    mapping(address actor => uint256) public ghostLocked;
    uint256 private _lockNonce;

    function openLockCount() external view returns (uint256) {
        return openLocks.length;
    }

    function slash(uint256 lockSeed, uint256 amount) external useTime {
        if (openLocks.length == 0) return;
        bytes32 id = openLocks[lockSeed % openLocks.length];
        address a = lockOperator[id];
        uint256 held = staking.lockOf(slasher, id).amount;
        amount = bound(amount, 1, held + 1e18); // sometimes more than the lock holds
        vm.prank(slasher);
        try staking.slash(id, amount, beneficiary) {
            slashed[a] += amount;
            totalSlashed += amount;
            ghostLocked[a] -= amount;
            ++slashes;
        } catch {}
    }

    function lock(uint256 actorSeed, uint256 amount) external useTime {
        address a = _actor(actorSeed);
        IStaking.Operator memory op = staking.operator(a);
        uint256 room = op.bonded + op.unbonding - op.locked;
        amount = bound(amount, 1, room == 0 ? 1 : room);
        bytes32 id = keccak256(abi.encode("lock", ++_lockNonce));
        vm.prank(slasher);
        try staking.lock(a, id, amount) {
            openLocks.push(id);
            lockOperator[id] = a;
            ghostLocked[a] += amount;
        } catch {}
    }

    function unlock(uint256 lockSeed) external useTime {
        if (openLocks.length == 0) return;
        uint256 index = lockSeed % openLocks.length;
        bytes32 id = openLocks[index];
        vm.prank(slasher);
        uint256 released = staking.unlock(id);
        ghostLocked[lockOperator[id]] -= released;
        openLocks[index] = openLocks[openLocks.length - 1];
        openLocks.pop();
    }
}
