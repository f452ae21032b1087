// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Strings} from "@openzeppelin/contracts/utils/Strings.sol";
import {Vm} from "./Vm.sol";

/// @title Cheatcode access and input bounding, shared by tests and invariant handlers
abstract contract Cheats {
    /// @dev keccak256("hevm cheat code") truncated to 20 bytes: 0x7109709ECfa91a80626fF3989D68f67F5b1DD12D.
    Vm internal constant vm = Vm(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);

    /// @dev secp256k1 group order; private keys live in [1, SECP256K1_N - 1].
    uint256 internal constant SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    /// @notice Maps any `x` into [min, max]. Values already in range are kept, so the fuzzer's own
    ///         choices survive; 0..3 land on min..min+3 and the top four uint256 values on
    ///         max-3..max so that the edges of the range are hit often; anything else wraps.
    function bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        require(min <= max, "bound: min > max");
        if (x >= min && x <= max) return x;
        uint256 span = max - min; // number of values minus one
        if (span == type(uint256).max) return x; // whole domain: unreachable given the check above
        if (x < 4 && x <= span) return min + x;
        uint256 fromTop = type(uint256).max - x;
        if (fromTop < 4 && fromTop <= span) return max - fromTop;
        return min + (x % (span + 1));
    }

    /// @notice A valid secp256k1 private key derived from any fuzzed `seed`.
    function boundPrivateKey(uint256 seed) internal pure returns (uint256) {
        return bound(seed, 1, SECP256K1_N - 1);
    }

    /// @notice 65-byte r‖s‖v signature of `digest` by `privateKey`, as OpenZeppelin ECDSA expects.
    function signDigest(uint256 privateKey, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(privateKey, digest);
        return abi.encodePacked(r, s, v);
    }
}

/// @title Minimal test base: assertions that revert with a readable message, and the
///        invariant-target bookkeeping the runner reads (`targetContracts`, `targetSelectors`,
///        `targetSenders`), with the same ABI Foundry's invariant executor queries.
abstract contract TestBase is Cheats {
    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    address[] private _targetedContracts;
    FuzzSelector[] private _targetedSelectors;
    address[] private _targetedSenders;

    // ------------------------------------------------------------ invariant targets

    /// @notice Restricts the invariant fuzzer to `target` (call once per target in setUp).
    function targetContract(address target) internal {
        _targetedContracts.push(target);
    }

    /// @notice Restricts the fuzzer to `selectors` on `target`.
    function targetSelector(address target, bytes4[] memory selectors) internal {
        _targetedSelectors.push(FuzzSelector({addr: target, selectors: selectors}));
    }

    /// @notice Restricts the `msg.sender` values the fuzzer uses.
    function targetSender(address sender) internal {
        _targetedSenders.push(sender);
    }

    function targetContracts() public view returns (address[] memory) {
        return _targetedContracts;
    }

    function targetSelectors() public view returns (FuzzSelector[] memory) {
        return _targetedSelectors;
    }

    function targetSenders() public view returns (address[] memory) {
        return _targetedSenders;
    }

    // ------------------------------------------------------------ assertions

    function fail(string memory what) internal pure {
        revert(string.concat("assertion failed: ", what));
    }

    function assertTrue(bool condition, string memory what) internal pure {
        if (!condition) fail(what);
    }

    function assertFalse(bool condition, string memory what) internal pure {
        if (condition) fail(what);
    }

    function assertEq(uint256 actual, uint256 expected, string memory what) internal pure {
        if (actual != expected) {
            fail(string.concat(what, ": expected ", Strings.toString(expected), ", got ", Strings.toString(actual)));
        }
    }

    function assertEq(address actual, address expected, string memory what) internal pure {
        if (actual != expected) {
            fail(
                string.concat(what, ": expected ", Strings.toHexString(expected), ", got ", Strings.toHexString(actual))
            );
        }
    }

    function assertEq(bytes32 actual, bytes32 expected, string memory what) internal pure {
        if (actual != expected) {
            fail(
                string.concat(
                    what,
                    ": expected ",
                    Strings.toHexString(uint256(expected), 32),
                    ", got ",
                    Strings.toHexString(uint256(actual), 32)
                )
            );
        }
    }

    function assertEq(bool actual, bool expected, string memory what) internal pure {
        if (actual != expected) {
            fail(string.concat(what, ": expected ", expected ? "true" : "false", ", got ", actual ? "true" : "false"));
        }
    }

    function assertEq(string memory actual, string memory expected, string memory what) internal pure {
        if (keccak256(bytes(actual)) != keccak256(bytes(expected))) {
            fail(string.concat(what, ": expected \"", expected, "\", got \"", actual, "\""));
        }
    }

    function assertLe(uint256 a, uint256 b, string memory what) internal pure {
        if (a > b) fail(string.concat(what, ": ", Strings.toString(a), " > ", Strings.toString(b)));
    }

    function assertGe(uint256 a, uint256 b, string memory what) internal pure {
        if (a < b) fail(string.concat(what, ": ", Strings.toString(a), " < ", Strings.toString(b)));
    }

    function assertLt(uint256 a, uint256 b, string memory what) internal pure {
        if (a >= b) fail(string.concat(what, ": ", Strings.toString(a), " >= ", Strings.toString(b)));
    }
}
