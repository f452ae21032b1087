// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TrustScores} from "../../contracts/TrustScores.sol";
import {ITrustScores} from "../../contracts/interfaces/ITrustScores.sol";
import {TestBase} from "./utils/TestBase.sol";

/// @title Fuzz tests of TrustScores: the smoothed pass-rate formula, monotonicity, parameter checks
contract TrustScoresFuzzTest is TestBase {
    uint256 internal constant WAD = 1e18;
    address internal constant SERVER = address(0x5E4E4);

    TrustScores internal trust;

    function setUp() public {
        trust = new TrustScores(address(this), _defaults());
        trust.grantRole(trust.AUDITOR_ROLE(), address(this));
        trust.grantRole(trust.PAYMENTS_ROLE(), address(this));
    }

    function _defaults() internal pure returns (ITrustScores.Params memory) {
        return ITrustScores.Params({
            priorPass: 1e18,
            priorFail: 1e18,
            paidPerCredit: 100_000,
            failureWeight: 10,
            failureRetainBps: 5_000,
            threshold: 0.3e18
        });
    }

    function _boundParams(ITrustScores.Params memory p) internal pure returns (ITrustScores.Params memory) {
        p.priorPass = uint128(bound(p.priorPass, 1, type(uint128).max));
        p.priorFail = uint128(bound(p.priorFail, 1, type(uint128).max));
        p.failureWeight = uint32(bound(p.failureWeight, 1, type(uint32).max));
        p.paidPerCredit = uint128(bound(p.paidPerCredit, 1, type(uint128).max));
        p.failureRetainBps = uint16(bound(p.failureRetainBps, 0, 10_000));
        p.threshold = uint64(bound(p.threshold, 0, WAD));
        return p;
    }

    /// @dev The formula of ITrustScores, recomputed independently.
    function _expected(ITrustScores.Params memory p, uint256 passed, uint256 failed, uint256 tokens)
        internal
        pure
        returns (uint256)
    {
        uint256 credit = passed * WAD + (tokens * WAD) / p.paidPerCredit;
        uint256 numerator = uint256(p.priorPass) + credit;
        uint256 denominator = numerator + p.priorFail + failed * p.failureWeight * WAD;
        uint256 rate = (numerator * WAD) / denominator;
        if (failed == 0) return rate;
        // retain^failed, one multiplication per failure (the contract squares; both round down, so
        // compare against the same squaring to stay exact)
        uint256 base = (uint256(p.failureRetainBps) * WAD) / 10_000;
        uint256 factor = WAD;
        for (uint256 e = failed; e != 0; e >>= 1) {
            if (e & 1 == 1) factor = (factor * base) / WAD;
            base = (base * base) / WAD;
        }
        return (rate * factor) / WAD;
    }

    function _record(uint256 passed, uint256 failed, uint256 tokens) internal {
        for (uint256 i = 0; i < passed; ++i) trust.recordAudit(SERVER, true);
        for (uint256 i = 0; i < failed; ++i) trust.recordAudit(SERVER, false);
        if (tokens != 0) trust.recordPayment(SERVER, tokens);
    }

    function testFuzz_NewServerStartsAtPrior(ITrustScores.Params memory p, address server) public {
        p = _boundParams(p);
        trust.setParams(p);
        uint256 expected = (uint256(p.priorPass) * WAD) / (uint256(p.priorPass) + p.priorFail);
        assertEq(trust.trustOf(server), expected, "prior trust");
        assertEq(trust.isTrusted(server), expected >= p.threshold, "isTrusted at prior");
    }

    function testFuzz_TrustMatchesFormula(ITrustScores.Params memory p, uint8 passed, uint8 failed, uint128 tokens)
        public
    {
        p = _boundParams(p);
        passed = uint8(bound(passed, 0, 12));
        failed = uint8(bound(failed, 0, 12));
        trust.setParams(p);
        _record(passed, failed, tokens);

        ITrustScores.Record memory r = trust.record(SERVER);
        assertEq(r.passedAudits, passed, "passedAudits");
        assertEq(r.failedAudits, failed, "failedAudits");
        assertEq(r.paidWork, tokens, "paidWork");
        uint256 expected = _expected(p, passed, failed, tokens);
        assertEq(trust.trustOf(SERVER), expected, "trustOf");
        assertLe(expected, WAD, "trust at most 1");
        assertEq(trust.isTrusted(SERVER), expected >= p.threshold, "isTrusted");
    }

    /// @dev From any history, a passed audit or more work never lowers trust; a failed audit never raises it.
    function testFuzz_TrustMonotonic(uint8 passed, uint8 failed, uint128 tokens, uint64 moreWork) public {
        passed = uint8(bound(passed, 0, 10));
        failed = uint8(bound(failed, 0, 10));
        tokens = uint128(bound(tokens, 0, type(uint128).max - type(uint64).max));
        _record(passed, failed, tokens);
        uint256 t0 = trust.trustOf(SERVER);

        trust.recordAudit(SERVER, true);
        uint256 t1 = trust.trustOf(SERVER);
        assertGe(t1, t0, "passed audit lowered trust");

        if (moreWork != 0) trust.recordPayment(SERVER, moreWork);
        uint256 t2 = trust.trustOf(SERVER);
        assertGe(t2, t1, "work lowered trust");

        trust.recordAudit(SERVER, false);
        uint256 t3 = trust.trustOf(SERVER);
        assertLe(t3, t2, "failed audit raised trust");
        assertEq(t3, _expected(_defaults(), uint256(passed) + 1, uint256(failed) + 1, uint256(tokens) + moreWork), "t3");
    }

    /// @dev However much credit a server built, one failed audit leaves it at most retain/10⁴ of its trust.
    function testFuzz_FailedAuditCostsAtLeastTheRetainFraction(uint8 passed, uint128 tokens) public {
        passed = uint8(bound(passed, 0, 50));
        _record(passed, 0, tokens);
        uint256 before = trust.trustOf(SERVER);
        trust.recordAudit(SERVER, false);
        assertLe(trust.trustOf(SERVER), before / 2, "a failed audit kept more than half the trust");
    }

    function testFuzz_BadParamsRevert(ITrustScores.Params memory p, uint8 which) public {
        p = _boundParams(p);
        which = uint8(bound(which, 0, 5));
        if (which == 0) p.priorPass = 0;
        else if (which == 1) p.priorFail = 0;
        else if (which == 2) p.failureWeight = 0;
        else if (which == 3) p.paidPerCredit = 0;
        else if (which == 4) p.failureRetainBps = uint16(bound(p.failureRetainBps, 10_001, type(uint16).max));
        else p.threshold = uint64(bound(p.threshold, WAD + 1, type(uint64).max));
        vm.expectRevert(abi.encodeWithSelector(ITrustScores.TrustBadParams.selector, p));
        trust.setParams(p);
    }

    /// @dev Regression (audit: one receipt declared as 2^64 tokens bought 0.999 trust): paid work is
    ///      the only work credited, it saturates instead of reverting (a redemption must never fail),
    ///      and nobody but PaymentChannels (PAYMENTS_ROLE) can record it.
    function testFuzz_RecordPaymentSaturates(uint256 first, uint256 second) public {
        first = bound(first, 1, type(uint256).max);
        trust.recordPayment(SERVER, first);
        uint256 expected = first > type(uint128).max ? type(uint128).max : first;
        assertEq(trust.record(SERVER).paidWork, expected, "paidWork after first");
        trust.recordPayment(SERVER, second);
        uint256 sum = expected + (second > type(uint128).max ? type(uint128).max : second);
        assertEq(trust.record(SERVER).paidWork, sum > type(uint128).max ? type(uint128).max : sum, "saturated sum");
    }

    function testFuzz_OnlyPaymentsRecordPayments(address caller) public {
        vm.assume(caller != address(this));
        vm.expectRevert(
            abi.encodeWithSignature("AccessControlUnauthorizedAccount(address,bytes32)", caller, trust.PAYMENTS_ROLE())
        );
        vm.prank(caller);
        trust.recordPayment(SERVER, 1);
    }

    function testFuzz_OnlyAuditorRecordsAudits(address caller) public {
        vm.assume(caller != address(this));
        vm.expectRevert(
            abi.encodeWithSignature("AccessControlUnauthorizedAccount(address,bytes32)", caller, trust.AUDITOR_ROLE())
        );
        vm.prank(caller);
        trust.recordAudit(SERVER, true);
    }
}
