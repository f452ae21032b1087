// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IStaking} from "../../contracts/interfaces/IStaking.sol";
import {VariantId} from "../../contracts/interfaces/IModelRegistry.sol";
import {EFedFixture} from "./utils/EFedFixture.sol";

/// @title Fuzz tests of Staking: deposits, layer ranges, stake minimums, unbonding, locks, slashing
contract StakingFuzzTest is EFedFixture {
    address internal constant ALICE = address(0xA11CE);
    address internal constant BENEFICIARY = address(0xBEEF);
    uint256 internal constant MAX_AMOUNT = 1e30;
    bytes32 internal constant LOCK_A = keccak256("dispute A");
    bytes32 internal constant LOCK_B = keccak256("dispute B");

    function setUp() public {
        _deployCore();
        staking.grantRole(staking.SLASHER_ROLE(), address(this));
        vm.warp(1_700_000_000);
    }

    // ------------------------------------------------------------ deposit

    function testFuzz_DepositBondsExactAmount(uint256 first, uint256 second) public {
        first = bound(first, 1, MAX_AMOUNT);
        second = bound(second, 1, MAX_AMOUNT);

        _mintAndDeposit(ALICE, first);
        IStaking.Operator memory op = staking.operator(ALICE);
        assertEq(op.bonded, first, "bonded after first deposit");
        assertEq(op.unbonding, 0, "unbonding after deposit");
        assertEq(staking.totalStaked(), first, "totalStaked after first deposit");

        _mintAndDeposit(ALICE, second);
        op = staking.operator(ALICE);
        assertEq(op.bonded, first + second, "bonded after second deposit");
        assertEq(staking.totalStaked(), first + second, "totalStaked after second deposit");
        assertEq(token.balanceOf(address(staking)), first + second, "staking balance");
        assertEq(token.balanceOf(ALICE), 0, "wallet emptied");
        assertEq(uint256(op.role), uint256(IStaking.Role.None), "deposit gives no role");
    }

    function test_DepositZeroReverts() public {
        vm.expectRevert(abi.encodeWithSelector(IStaking.StakingZeroAmount.selector));
        vm.prank(ALICE);
        staking.deposit(0);
    }

    // ------------------------------------------------------------ minServerStake

    function testFuzz_MinServerStakeArithmetic(uint128 base, uint128 perLayer, uint16 layers) public {
        staking.setStakeParams(
            IStaking.StakeParams({serverBaseStake: base, serverStakePerLayer: perLayer, verifierMinStake: 1})
        );
        uint256 expected = uint256(base) + uint256(perLayer) * uint256(layers);
        assertEq(staking.minServerStake(layers), expected, "minServerStake");
    }

    function testFuzz_MinServerStakeOverflowReverts(uint256 base, uint256 perLayer, uint256 layers) public {
        perLayer = bound(perLayer, 2, type(uint256).max);
        layers = bound(layers, type(uint256).max / perLayer + 1, type(uint256).max);
        staking.setStakeParams(
            IStaking.StakeParams({serverBaseStake: base, serverStakePerLayer: perLayer, verifierMinStake: 1})
        );
        // perLayer * layers overflows: checked arithmetic must revert with Panic(0x11), never wrap.
        vm.expectRevert(abi.encodeWithSignature("Panic(uint256)", uint256(0x11)));
        staking.minServerStake(layers);
    }

    // ------------------------------------------------------------ registerServer layer ranges

    /// @dev Registers a fresh variant with a fuzzed layer count, then a valid range within it.
    function testFuzz_RegisterServerValidRangeStoresExactly(
        uint16 numLayers,
        uint16 firstLayer,
        uint16 lastLayer,
        uint256 price,
        uint256 extraStake
    ) public {
        numLayers = uint16(bound(numLayers, 1, type(uint16).max));
        firstLayer = uint16(bound(firstLayer, 0, numLayers - 1));
        lastLayer = uint16(bound(lastLayer, firstLayer + 1, numLayers));
        extraStake = bound(extraStake, 0, MAX_AMOUNT);
        VariantId variant = VariantId.wrap(keccak256(abi.encode("fuzz-variant", numLayers)));
        registry.registerVariant(variant, numLayers, MANIFEST);

        uint256 needed = SERVER_BASE_STAKE + SERVER_STAKE_PER_LAYER * (lastLayer - firstLayer);
        assertEq(staking.minServerStake(lastLayer - firstLayer), needed, "minServerStake for the range");
        _mintAndDeposit(ALICE, needed + extraStake);

        vm.prank(ALICE);
        staking.registerServer(variant, firstLayer, lastLayer, ENDPOINT, price);

        IStaking.Server memory s = staking.server(ALICE);
        assertEq(VariantId.unwrap(s.variant), VariantId.unwrap(variant), "server variant");
        assertEq(s.firstLayer, firstLayer, "server firstLayer");
        assertEq(s.lastLayer, lastLayer, "server lastLayer");
        assertEq(s.pricePerToken, price, "server price");
        assertEq(s.endpoint, ENDPOINT, "server endpoint");
        assertEq(uint256(staking.operator(ALICE).role), uint256(IStaking.Role.Server), "role");
        assertTrue(staking.isActiveServer(ALICE), "server is active");
        assertEq(staking.serverCount(variant), 1, "serverCount");

        IStaking.ServerInfo[] memory page = staking.servers(variant, 0, 10);
        assertEq(page.length, 1, "servers page length");
        assertEq(page[0].operator, ALICE, "page operator");
        assertEq(page[0].firstLayer, firstLayer, "page firstLayer");
        assertEq(page[0].lastLayer, lastLayer, "page lastLayer");
        assertEq(page[0].stake, needed + extraStake, "page stake");
        assertTrue(page[0].collateralized, "page collateralized");
    }

    /// @dev Any pair of uint16 outside `first < last <= NUM_LAYERS` reverts with the exact error.
    function testFuzz_RegisterServerInvalidRangeReverts(uint16 firstLayer, uint16 lastLayer) public {
        vm.assume(firstLayer >= lastLayer || lastLayer > NUM_LAYERS);
        _mintAndDeposit(ALICE, MAX_AMOUNT);
        vm.expectRevert(
            abi.encodeWithSelector(IStaking.StakingBadLayerRange.selector, firstLayer, lastLayer, NUM_LAYERS)
        );
        vm.prank(ALICE);
        staking.registerServer(VARIANT, firstLayer, lastLayer, ENDPOINT, 1);
    }

    /// @dev The empty/reversed ranges inside [0, NUM_LAYERS], which random uint16 pairs rarely hit.
    function testFuzz_RegisterServerEmptyOrReversedRangeReverts(uint16 firstLayer, uint16 lastLayer) public {
        lastLayer = uint16(bound(lastLayer, 0, NUM_LAYERS));
        firstLayer = uint16(bound(firstLayer, lastLayer, NUM_LAYERS + 1));
        _mintAndDeposit(ALICE, MAX_AMOUNT);
        vm.expectRevert(
            abi.encodeWithSelector(IStaking.StakingBadLayerRange.selector, firstLayer, lastLayer, NUM_LAYERS)
        );
        vm.prank(ALICE);
        staking.registerServer(VARIANT, firstLayer, lastLayer, ENDPOINT, 1);
    }

    function testFuzz_RegisterServerBelowMinimumReverts(uint16 firstLayer, uint16 lastLayer, uint256 shortBy) public {
        firstLayer = uint16(bound(firstLayer, 0, NUM_LAYERS - 1));
        lastLayer = uint16(bound(lastLayer, firstLayer + 1, NUM_LAYERS));
        uint256 needed = staking.minServerStake(lastLayer - firstLayer);
        shortBy = bound(shortBy, 1, needed - 1);
        _mintAndDeposit(ALICE, needed - shortBy);

        vm.expectRevert(
            abi.encodeWithSelector(IStaking.StakingInsufficientStake.selector, ALICE, needed - shortBy, needed)
        );
        vm.prank(ALICE);
        staking.registerServer(VARIANT, firstLayer, lastLayer, ENDPOINT, 1);
    }

    /// @dev Re-registering moves the server between variants and replaces the stored range.
    function testFuzz_ReRegisterReplacesRange(uint16 a1, uint16 b1, uint16 a2, uint16 b2) public {
        a1 = uint16(bound(a1, 0, NUM_LAYERS - 1));
        b1 = uint16(bound(b1, a1 + 1, NUM_LAYERS));
        a2 = uint16(bound(a2, 0, NUM_LAYERS - 1));
        b2 = uint16(bound(b2, a2 + 1, NUM_LAYERS));
        VariantId other = VariantId.wrap(keccak256("other-variant"));
        registry.registerVariant(other, NUM_LAYERS, MANIFEST);
        _mintAndDeposit(ALICE, staking.minServerStake(NUM_LAYERS));

        vm.startPrank(ALICE);
        staking.registerServer(VARIANT, a1, b1, ENDPOINT, 1);
        staking.registerServer(other, a2, b2, "wss://second", 2);
        vm.stopPrank();

        IStaking.Server memory s = staking.server(ALICE);
        assertEq(VariantId.unwrap(s.variant), VariantId.unwrap(other), "variant replaced");
        assertEq(s.firstLayer, a2, "firstLayer replaced");
        assertEq(s.lastLayer, b2, "lastLayer replaced");
        assertEq(s.pricePerToken, 2, "price replaced");
        assertEq(staking.serverCount(VARIANT), 0, "left the old variant");
        assertEq(staking.serverCount(other), 1, "joined the new variant");
    }

    // ------------------------------------------------------------ unbonding and withdrawal

    function testFuzz_RequestUnbondThenWithdrawExactly(uint256 amount, uint256 unbond, uint256 lateBy) public {
        amount = bound(amount, 1, MAX_AMOUNT);
        unbond = bound(unbond, 1, amount);
        lateBy = bound(lateBy, 0, 365 days);
        _mintAndDeposit(ALICE, amount);

        uint256 requestedAt = block.timestamp;
        vm.prank(ALICE);
        staking.requestUnbond(unbond);

        IStaking.Operator memory op = staking.operator(ALICE);
        uint64 readyAt = uint64(requestedAt + UNBONDING_DELAY);
        assertEq(op.bonded, amount - unbond, "bonded after request");
        assertEq(op.unbonding, unbond, "unbonding after request");
        assertEq(op.unbondReadyAt, readyAt, "unbondReadyAt");
        assertEq(staking.totalStaked(), amount, "unbonding stake still counts as staked");

        // One second early: the exact not-ready error.
        vm.warp(readyAt - 1);
        vm.expectRevert(
            abi.encodeWithSelector(IStaking.StakingUnbondingNotReady.selector, ALICE, readyAt, readyAt - 1)
        );
        vm.prank(ALICE);
        staking.withdraw();

        vm.warp(uint256(readyAt) + lateBy);
        vm.prank(ALICE);
        uint256 withdrawn = staking.withdraw();
        assertEq(withdrawn, unbond, "withdrawn amount");
        assertEq(token.balanceOf(ALICE), unbond, "wallet received exactly the unbonded amount");
        op = staking.operator(ALICE);
        assertEq(op.bonded, amount - unbond, "bonded untouched by withdraw");
        assertEq(op.unbonding, 0, "unbonding emptied");
        assertEq(staking.totalStaked(), amount - unbond, "totalStaked after withdraw");
        assertEq(token.balanceOf(address(staking)), amount - unbond, "staking balance after withdraw");

        vm.expectRevert(abi.encodeWithSelector(IStaking.StakingNothingToWithdraw.selector, ALICE));
        vm.prank(ALICE);
        staking.withdraw();
    }

    /// @dev A second request restarts the delay for the whole unbonding amount.
    function testFuzz_SecondRequestRestartsDelay(uint256 amount, uint256 u1, uint256 u2, uint256 gap) public {
        amount = bound(amount, 2, MAX_AMOUNT);
        u1 = bound(u1, 1, amount - 1);
        u2 = bound(u2, 1, amount - u1);
        gap = bound(gap, 1, UNBONDING_DELAY - 1);
        _mintAndDeposit(ALICE, amount);

        vm.prank(ALICE);
        staking.requestUnbond(u1);
        vm.warp(block.timestamp + gap);
        vm.prank(ALICE);
        staking.requestUnbond(u2);
        uint64 readyAt = uint64(block.timestamp + UNBONDING_DELAY);
        assertEq(staking.operator(ALICE).unbondReadyAt, readyAt, "restarted readyAt");
        assertEq(staking.operator(ALICE).unbonding, u1 + u2, "unbonding accumulates");

        // When the first request alone would have been ready, nothing can be withdrawn.
        vm.warp(readyAt - gap);
        vm.expectRevert(
            abi.encodeWithSelector(IStaking.StakingUnbondingNotReady.selector, ALICE, readyAt, readyAt - gap)
        );
        vm.prank(ALICE);
        staking.withdraw();

        vm.warp(readyAt);
        vm.prank(ALICE);
        assertEq(staking.withdraw(), u1 + u2, "withdraws both requests at the restarted time");
    }

    function testFuzz_UnbondMoreThanBondedReverts(uint256 amount, uint256 unbond) public {
        amount = bound(amount, 1, MAX_AMOUNT);
        unbond = bound(unbond, amount + 1, type(uint256).max);
        _mintAndDeposit(ALICE, amount);
        vm.expectRevert(
            abi.encodeWithSelector(IStaking.StakingUnbondExceedsBonded.selector, ALICE, unbond, amount)
        );
        vm.prank(ALICE);
        staking.requestUnbond(unbond);
    }

    /// @dev A registered server may unbond only its surplus above the minimum of its range.
    function testFuzz_ServerKeepsMinimumBonded(uint16 firstLayer, uint16 lastLayer, uint256 surplus, uint256 over)
        public
    {
        firstLayer = uint16(bound(firstLayer, 0, NUM_LAYERS - 1));
        lastLayer = uint16(bound(lastLayer, firstLayer + 1, NUM_LAYERS));
        surplus = bound(surplus, 0, MAX_AMOUNT);
        uint256 needed = staking.minServerStake(lastLayer - firstLayer);
        over = bound(over, 1, needed);
        _mintAndDeposit(ALICE, needed + surplus);
        vm.prank(ALICE);
        staking.registerServer(VARIANT, firstLayer, lastLayer, ENDPOINT, 1);

        vm.expectRevert(
            abi.encodeWithSelector(IStaking.StakingInsufficientStake.selector, ALICE, needed - over, needed)
        );
        vm.prank(ALICE);
        staking.requestUnbond(surplus + over);

        if (surplus != 0) {
            vm.prank(ALICE);
            staking.requestUnbond(surplus);
            assertEq(staking.operator(ALICE).bonded, needed, "bonded left at the minimum");
            assertTrue(staking.isActiveServer(ALICE), "still active at the minimum");
        }
    }

    // ------------------------------------------------------------ locks and slashing

    /// @dev withdraw() pays min(unbonding, total - locked) and reverts when that is zero.
    function testFuzz_WithdrawLeavesLockedStake(uint256 amount, uint256 unbond, uint256 locked) public {
        amount = bound(amount, 1, MAX_AMOUNT);
        unbond = bound(unbond, 1, amount);
        locked = bound(locked, 1, amount);
        _mintAndDeposit(ALICE, amount);
        vm.prank(ALICE);
        staking.requestUnbond(unbond);
        staking.lock(ALICE, LOCK_A, locked);
        vm.warp(block.timestamp + UNBONDING_DELAY);

        uint256 free = amount - locked;
        uint256 expected = unbond < free ? unbond : free;
        if (expected == 0) {
            vm.expectRevert(abi.encodeWithSelector(IStaking.StakingStakeLocked.selector, ALICE, locked, amount));
            vm.prank(ALICE);
            staking.withdraw();
            return;
        }
        vm.prank(ALICE);
        assertEq(staking.withdraw(), expected, "withdraw skips locked stake");
        IStaking.Operator memory op = staking.operator(ALICE);
        assertEq(op.bonded + op.unbonding, amount - expected, "stake left");
        assertGe(op.bonded + op.unbonding, op.locked, "locked stake stays in the contract");
        assertEq(op.locked, locked, "lock unchanged by withdraw");
    }

    function testFuzz_LockBeyondStakeReverts(uint256 amount, uint256 extra) public {
        amount = bound(amount, 1, MAX_AMOUNT);
        extra = bound(extra, 1, MAX_AMOUNT);
        _mintAndDeposit(ALICE, amount);
        vm.expectRevert(
            abi.encodeWithSelector(IStaking.StakingLockExceedsStake.selector, ALICE, amount + extra, 0, amount)
        );
        staking.lock(ALICE, LOCK_A, amount + extra);
    }

    /// @dev slash takes from its own lock, bonded first, then unbonding, and pays the beneficiary.
    function testFuzz_SlashTakesBondedThenUnbonding(uint256 amount, uint256 unbond, uint256 slashAmount, uint256 locked)
        public
    {
        amount = bound(amount, 1, MAX_AMOUNT);
        unbond = bound(unbond, 0, amount);
        locked = bound(locked, 1, amount);
        slashAmount = bound(slashAmount, 1, locked);
        _mintAndDeposit(ALICE, amount);
        if (unbond != 0) {
            vm.prank(ALICE);
            staking.requestUnbond(unbond);
        }
        staking.lock(ALICE, LOCK_A, locked);

        uint256 bonded = amount - unbond;
        uint256 fromBonded = slashAmount < bonded ? slashAmount : bonded;
        uint256 fromUnbonding = slashAmount - fromBonded;

        staking.slash(LOCK_A, slashAmount, BENEFICIARY);
        IStaking.Operator memory op = staking.operator(ALICE);
        assertEq(op.bonded, bonded - fromBonded, "bonded after slash");
        assertEq(op.unbonding, unbond - fromUnbonding, "unbonding after slash");
        assertEq(op.locked, locked - slashAmount, "the lock shrank by the slash");
        assertEq(staking.lockOf(address(this), LOCK_A).amount, locked - slashAmount, "lock record");
        assertEq(token.balanceOf(BENEFICIARY), slashAmount, "beneficiary paid");
        assertEq(staking.totalStaked(), amount - slashAmount, "totalStaked after slash");
        assertEq(token.balanceOf(address(staking)), amount - slashAmount, "staking balance after slash");
    }

    /// @dev Regression (audit: one shared lock number): two disputes lock independently; slashing and
    ///      unlocking one, in either order, leaves the other's lock whole and its unlock working.
    function testFuzz_LocksAreIndependent(uint256 amount, uint256 a, uint256 b, uint256 slashA, bool unlockFirst)
        public
    {
        amount = bound(amount, 2, MAX_AMOUNT);
        a = bound(a, 1, amount - 1);
        b = bound(b, 1, amount - a);
        slashA = bound(slashA, 1, a);
        _mintAndDeposit(ALICE, amount);
        staking.lock(ALICE, LOCK_A, a);
        staking.lock(ALICE, LOCK_B, b);
        assertEq(staking.operator(ALICE).locked, a + b, "both locks counted");

        if (unlockFirst) {
            assertEq(staking.unlock(LOCK_B), b, "B released whole");
            staking.slash(LOCK_A, slashA, BENEFICIARY);
            assertEq(staking.unlock(LOCK_A), a - slashA, "A releases what its slash left");
        } else {
            staking.slash(LOCK_A, slashA, BENEFICIARY);
            assertEq(staking.unlock(LOCK_A), a - slashA, "A releases what its slash left");
            assertEq(staking.operator(ALICE).locked, b, "B still fully locked after A's slash and unlock");
            assertEq(staking.unlock(LOCK_B), b, "B released whole");
        }
        assertEq(staking.operator(ALICE).locked, 0, "nothing locked");
        assertEq(staking.operator(ALICE).bonded, amount - slashA, "only A's slash left the stake");
        vm.expectRevert(abi.encodeWithSelector(IStaking.StakingUnknownLock.selector, address(this), LOCK_A));
        staking.unlock(LOCK_A);
    }

    /// @dev A slash never takes more than its own lock holds, even when other locks exist.
    function testFuzz_SlashBeyondOwnLockReverts(uint256 amount, uint256 a, uint256 over) public {
        amount = bound(amount, 2, MAX_AMOUNT);
        a = bound(a, 1, amount - 1);
        over = bound(over, 1, MAX_AMOUNT);
        _mintAndDeposit(ALICE, amount);
        staking.lock(ALICE, LOCK_A, a);
        staking.lock(ALICE, LOCK_B, amount - a);
        vm.expectRevert(abi.encodeWithSelector(IStaking.StakingSlashExceedsLock.selector, LOCK_A, a + over, a));
        staking.slash(LOCK_A, a + over, BENEFICIARY);
    }

    function testFuzz_SlashRequiresRole(address caller, uint256 amount) public {
        vm.assume(caller != address(this));
        amount = bound(amount, 1, MAX_AMOUNT);
        _mintAndDeposit(ALICE, amount);
        vm.expectRevert(
            abi.encodeWithSignature(
                "AccessControlUnauthorizedAccount(address,bytes32)", caller, staking.SLASHER_ROLE()
            )
        );
        vm.prank(caller);
        staking.slash(LOCK_A, amount, caller);
    }
}
