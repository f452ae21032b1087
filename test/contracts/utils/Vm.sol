// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title The few cheatcodes the eFed Solidity tests use
/// @notice Hardhat 3's Solidity test runner (EDR) answers these at the cheatcode address
///         0x7109709ECfa91a80626fF3989D68f67F5b1DD12D, the same one Foundry uses. Only the
///         signatures below are declared: forge-std is not available offline.
interface Vm {
    /// @notice The next call (only) is made with `msg.sender == sender`.
    function prank(address sender) external;

    /// @notice Every following call is made with `msg.sender == sender` until `stopPrank`.
    function startPrank(address sender) external;

    /// @notice Ends a `startPrank`.
    function stopPrank() external;

    /// @notice Sets `block.timestamp`.
    function warp(uint256 newTimestamp) external;

    /// @notice Sets `block.number`.
    function roll(uint256 newHeight) external;

    /// @notice The next call must revert with exactly `revertData`.
    function expectRevert(bytes calldata revertData) external;

    /// @notice The next call must revert with data starting with `revertSelector` (no arguments).
    function expectRevert(bytes4 revertSelector) external;

    /// @notice The next call must revert, whatever the data.
    function expectRevert() external;

    /// @notice Discards the current fuzz input when `condition` is false.
    function assume(bool condition) external pure;

    /// @notice Address of the secp256k1 private key `privateKey`.
    function addr(uint256 privateKey) external pure returns (address);

    /// @notice Signs `digest` with `privateKey` (no prefix is added).
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);

    /// @notice Names `account` in traces.
    function label(address account, string calldata newLabel) external;
}
