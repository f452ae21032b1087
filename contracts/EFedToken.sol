// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title eFed token
/// @notice The ERC20 (with EIP-2612 permit) in which stakes, fees and rewards are paid.
/// @dev Minting is reserved to the owner; on a devnet the deployer mints test balances. A production
///      deployment would renounce ownership after the initial distribution, or use an existing token.
contract EFedToken is ERC20, ERC20Permit, Ownable {
    constructor(address initialOwner) ERC20("eFed", "EFED") ERC20Permit("eFed") Ownable(initialOwner) {}

    /// @notice Mints `amount` tokens to `to`. Only the owner.
    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
