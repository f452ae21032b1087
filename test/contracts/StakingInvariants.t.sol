// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IStaking} from "../../contracts/interfaces/IStaking.sol";
import {EFedFixture} from "./utils/EFedFixture.sol";
import {StakingHandler} from "./utils/StakingHandler.sol";

/// @title Invariants of Staking under random deposits, role changes, unbonds, withdrawals, locks and slashes
contract StakingInvariantTest is EFedFixture {
    StakingHandler internal handler;
    address internal constant SLASHER = address(0x51A5);
    address internal constant BENEFICIARY = address(0xBEEF);

    function setUp() public {
        _deployCore();
        vm.warp(1_700_000_000);
        address[] memory actors = new address[](3);
        actors[0] = address(0xA11CE);
        actors[1] = address(0xB0B);
        actors[2] = address(0xCA401);
        handler = new StakingHandler(staking, token, VARIANT, NUM_LAYERS, SLASHER, BENEFICIARY, actors);
        staking.grantRole(staking.SLASHER_ROLE(), SLASHER);
        token.mint(address(handler), 1e40);

        targetContract(address(handler));
        bytes4[] memory selectors = new bytes4[](12);
        selectors[0] = StakingHandler.warp.selector;
        selectors[1] = StakingHandler.deposit.selector;
        selectors[2] = StakingHandler.registerServer.selector;
        selectors[3] = StakingHandler.registerVerifier.selector;
        selectors[4] = StakingHandler.deregister.selector;
        selectors[5] = StakingHandler.requestUnbond.selector;
        selectors[6] = StakingHandler.withdraw.selector;
        selectors[7] = StakingHandler.slash.selector;
        selectors[8] = StakingHandler.lock.selector;
        selectors[9] = StakingHandler.unlock.selector;
        selectors[10] = StakingHandler.warpNearReady.selector;
        selectors[11] = StakingHandler.withdrawAll.selector;
        targetSelector(address(handler), selectors);
    }

    /// @dev (1) totalStaked() == Σ (bonded + unbonding) == token balance of the staking contract.
    function invariant_TotalStakedMatchesBalances() public view {
        address[] memory actors = handler.actors();
        uint256 sum = 0;
        for (uint256 i = 0; i < actors.length; ++i) {
            IStaking.Operator memory op = staking.operator(actors[i]);
            sum += op.bonded + op.unbonding;
            assertLe(op.locked, op.bonded + op.unbonding, "locked exceeds stake");
            assertEq(op.locked, handler.ghostLocked(actors[i]), "locked vs the sum of open locks");
        }
        assertEq(staking.totalStaked(), sum, "totalStaked vs sum of operators");
        assertEq(token.balanceOf(address(staking)), sum, "staking token balance vs sum of operators");
    }

    /// @dev (3) Slashed stake is gone for the operator: per operator, deposited = withdrawn + slashed +
    ///      stake still held, so withdrawn <= deposited - slashed; slashes went to the beneficiary only.
    function invariant_SlashedStakeNeverWithdrawn() public view {
        address[] memory actors = handler.actors();
        for (uint256 i = 0; i < actors.length; ++i) {
            address a = actors[i];
            IStaking.Operator memory op = staking.operator(a);
            uint256 dep = handler.deposited(a);
            uint256 gone = handler.withdrawn(a) + handler.slashed(a);
            assertLe(gone, dep, "withdrawn + slashed exceeds deposited");
            assertEq(op.bonded + op.unbonding, dep - gone, "operator stake vs deposited - withdrawn - slashed");
            assertEq(token.balanceOf(a), handler.withdrawn(a), "operator wallet holds only what it withdrew");
        }
        assertLe(
            handler.totalWithdrawn(),
            handler.totalDeposited() - handler.totalSlashed(),
            "total withdrawn exceeds deposited - slashed"
        );
        assertEq(token.balanceOf(BENEFICIARY), handler.totalSlashed(), "beneficiary got exactly the slashes");
        assertFalse(handler.lockedStakeWithdrawn(), "a withdraw paid out locked stake");
    }

    /// @dev (4) A withdraw never succeeds before its unbond request + unbondingDelay.
    function invariant_UnbondingNeverCompletesEarly() public view {
        assertFalse(handler.earlyWithdraw(), "withdraw succeeded before the unbonding delay");
    }
}
