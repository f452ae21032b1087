// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Verifier reward pool
/// @notice Holds the protocol fee taken from every channel redemption (and any slashed stake sent
///         here). The audit/dispute logic, holding REWARDER_ROLE, allocates rewards to verifiers out
///         of the unallocated balance; verifiers claim them.
interface IVerifierRewards {
    /// @notice The verifier address must not be zero.
    error RewardsZeroVerifier();
    /// @notice Allocating `amount` exceeds the `available` unallocated balance.
    error RewardsInsufficientPool(uint256 amount, uint256 available);
    /// @notice `account` has nothing to claim.
    error RewardsNothingToClaim(address account);

    event RewardAllocated(address indexed verifier, uint256 amount);
    event RewardClaimed(address indexed verifier, uint256 amount);

    /// @notice Earmarks `amount` of the unallocated balance for `verifier`. Only REWARDER_ROLE.
    function allocate(address verifier, uint256 amount) external;

    /// @notice Pays the caller everything allocated to it.
    function claim() external returns (uint256 amount);

    /// @notice What `verifier` can claim.
    function owed(address verifier) external view returns (uint256);

    /// @notice Balance not yet allocated to anyone.
    function unallocated() external view returns (uint256);
}
