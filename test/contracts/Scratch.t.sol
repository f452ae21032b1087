// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;
import {IStaking} from "../../contracts/interfaces/IStaking.sol";
import {EFedFixture} from "./utils/EFedFixture.sol";
contract ScratchTest is EFedFixture {
    function setUp() public { _deployCore(); }
    function testFuzz_wrongAssert(uint256 a) public {
        a = bound(a, 1, 1e30);
        _mintAndDeposit(address(0xA11CE), a);
        assertEq(staking.totalStaked(), a + 1, "deliberately wrong");
    }
    function test_wrongRevert() public {
        vm.expectRevert(abi.encodeWithSelector(IStaking.StakingBadLayerRange.selector, uint16(1), uint16(2), uint16(33)));
        vm.prank(address(0xA11CE));
        staking.registerServer(VARIANT, 2, 1, ENDPOINT, 1);
    }
    function test_bound() public pure {
        assertEq(bound(0, 5, 10), 5, "b0");
        assertEq(bound(3, 5, 10), 8, "b3");
        assertEq(bound(type(uint256).max, 5, 10), 10, "bmax");
        assertEq(bound(type(uint256).max - 2, 5, 10), 8, "bmax-2");
        assertEq(bound(7, 5, 10), 7, "in");
        assertEq(bound(11, 5, 10), 5 + 11 % 6, "wrap");
        assertEq(bound(5, 0, type(uint256).max), 5, "full");
    }
}
