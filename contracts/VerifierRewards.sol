// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IVerifierRewards} from "./interfaces/IVerifierRewards.sol";

/// @title Verifier reward pool
/// @notice See {IVerifierRewards}. Funding is a plain token transfer to this contract, so payers
///         need no special call; `unallocated()` is the balance minus what is owed.
contract VerifierRewards is IVerifierRewards, AccessControl {
    using SafeERC20 for IERC20;

    /// @notice Role of the audit/dispute logic that decides rewards.
    bytes32 public constant REWARDER_ROLE = keccak256("REWARDER_ROLE");

    IERC20 public immutable token;
    uint256 public totalOwed;
    mapping(address verifier => uint256) private _owed;

    constructor(address admin, IERC20 token_) {
        token = token_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @inheritdoc IVerifierRewards
    function allocate(address verifier, uint256 amount) external onlyRole(REWARDER_ROLE) {
        if (verifier == address(0)) revert RewardsZeroVerifier();
        uint256 available = unallocated();
        if (amount > available) revert RewardsInsufficientPool(amount, available);
        _owed[verifier] += amount;
        totalOwed += amount;
        emit RewardAllocated(verifier, amount);
    }

    /// @inheritdoc IVerifierRewards
    function claim() external returns (uint256 amount) {
        amount = _owed[msg.sender];
        if (amount == 0) revert RewardsNothingToClaim(msg.sender);
        _owed[msg.sender] = 0;
        totalOwed -= amount;
        emit RewardClaimed(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc IVerifierRewards
    function owed(address verifier) external view returns (uint256) {
        return _owed[verifier];
    }

    /// @inheritdoc IVerifierRewards
    function unallocated() public view returns (uint256) {
        return token.balanceOf(address(this)) - totalOwed;
    }
}
