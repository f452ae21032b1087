// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EFedToken} from "../../../contracts/EFedToken.sol";
import {ModelRegistry} from "../../../contracts/ModelRegistry.sol";
import {Staking} from "../../../contracts/Staking.sol";
import {TrustScores} from "../../../contracts/TrustScores.sol";
import {ITrustScores} from "../../../contracts/interfaces/ITrustScores.sol";
import {IStaking} from "../../../contracts/interfaces/IStaking.sol";
import {VariantId} from "../../../contracts/interfaces/IModelRegistry.sol";
import {TestBase} from "./TestBase.sol";

/// @title Shared deployment for the eFed Solidity tests
/// @notice Deploys token, registry (one variant), trust scores (prior 0.5, θ 0.4) and staking reading
///         them, with this test contract as owner, admin and governance, so tests can mint and change
///         parameters directly.
abstract contract EFedFixture is TestBase {
    uint16 internal constant NUM_LAYERS = 32;
    VariantId internal constant VARIANT = VariantId.wrap(keccak256("efed-test-variant"));
    string internal constant MANIFEST = "ipfs://efed-test-manifest";
    string internal constant ENDPOINT = "wss://server.example/efed";

    uint64 internal constant CHALLENGE_WINDOW = 1 days;
    uint64 internal constant MAX_DISPUTE = 2 days;
    uint64 internal constant UNBONDING_DELAY = 7 days;
    uint64 internal constant PROBATION = 1 days;

    uint256 internal constant SERVER_BASE_STAKE = 1_000e18;
    uint256 internal constant SERVER_STAKE_PER_LAYER = 100e18;
    uint256 internal constant VERIFIER_MIN_STAKE = 500e18;

    EFedToken internal token;
    ModelRegistry internal registry;
    Staking internal staking;
    TrustScores internal trust;

    function _deployCore() internal {
        token = new EFedToken(address(this));
        registry = new ModelRegistry(address(this));
        registry.registerVariant(VARIANT, NUM_LAYERS, MANIFEST);
        trust = new TrustScores(
            address(this),
            ITrustScores.Params({
                priorPass: 1e18,
                priorFail: 1e18,
                paidPerCredit: 1_000e18,
                failureWeight: 10,
                failureRetainBps: 5_000,
                threshold: 0.4e18
            })
        );
        staking = new Staking(
            address(this),
            token,
            registry,
            IStaking.Timing({
                challengeWindow: CHALLENGE_WINDOW,
                maxDisputeDuration: MAX_DISPUTE,
                unbondingDelay: UNBONDING_DELAY,
                probationPeriod: PROBATION
            }),
            IStaking.StakeParams({
                serverBaseStake: SERVER_BASE_STAKE,
                serverStakePerLayer: SERVER_STAKE_PER_LAYER,
                verifierMinStake: VERIFIER_MIN_STAKE
            })
        );
        staking.setTrustSource(address(trust));
    }

    /// @dev Mints `amount` to `account` and deposits it all as `account`'s bonded stake.
    function _mintAndDeposit(address account, uint256 amount) internal {
        token.mint(account, amount);
        vm.startPrank(account);
        token.approve(address(staking), amount);
        staking.deposit(amount);
        vm.stopPrank();
    }

    /// @dev Makes `account` an active server of VARIANT over [first, last) with exactly the minimum stake.
    function _makeServer(address account, uint16 first, uint16 last) internal {
        _mintAndDeposit(account, staking.minServerStake(last - first));
        vm.prank(account);
        staking.registerServer(VARIANT, first, last, ENDPOINT, 1e12);
    }
}
