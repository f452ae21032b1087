// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ITrustScores} from "./interfaces/ITrustScores.sol";

/// @title Trust scores
/// @notice See {ITrustScores} for the formula.
contract TrustScores is ITrustScores, AccessControl {
    /// @notice Role of the audit/dispute logic that records audit outcomes.
    bytes32 public constant AUDITOR_ROLE = keccak256("AUDITOR_ROLE");
    /// @notice Role of PaymentChannels, which records what clients paid.
    bytes32 public constant PAYMENTS_ROLE = keccak256("PAYMENTS_ROLE");
    /// @notice Role allowed to change the parameters.
    bytes32 public constant GOVERNANCE_ROLE = keccak256("GOVERNANCE_ROLE");

    uint256 private constant WAD = 1e18;
    uint256 private constant BPS = 10_000;

    mapping(address server => Record) private _records;
    Params private _params;

    constructor(address admin, Params memory initialParams) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(GOVERNANCE_ROLE, admin);
        _setParams(initialParams);
    }

    /// @inheritdoc ITrustScores
    function recordAudit(address server, bool passed) external onlyRole(AUDITOR_ROLE) {
        if (server == address(0)) revert TrustZeroServer();
        Record storage r = _records[server];
        if (passed) ++r.passedAudits;
        else ++r.failedAudits;
        emit AuditRecorded(server, passed, trustOf(server));
    }

    /// @inheritdoc ITrustScores
    function recordPassedAudits(address server, uint64 count) external onlyRole(AUDITOR_ROLE) {
        if (server == address(0)) revert TrustZeroServer();
        if (count == 0) revert TrustZeroCount();
        _records[server].passedAudits += count;
        emit AuditsPassed(server, count, trustOf(server));
    }

    /// @inheritdoc ITrustScores
    function recordPayment(address server, uint256 amount) external onlyRole(PAYMENTS_ROLE) {
        if (server == address(0)) revert TrustZeroServer();
        Record storage r = _records[server];
        // Saturating: a redemption must never fail because a counter is full.
        uint256 room = type(uint128).max - r.paidWork;
        // unchecked: amount < room <= 2^128-1 - paidWork, so the sum fits in uint128
        unchecked {
            r.paidWork = amount >= room ? type(uint128).max : r.paidWork + uint128(amount);
        }
        emit PaymentRecorded(server, amount, trustOf(server));
    }

    /// @inheritdoc ITrustScores
    function setParams(Params calldata newParams) external onlyRole(GOVERNANCE_ROLE) {
        _setParams(newParams);
    }

    /// @inheritdoc ITrustScores
    function record(address server) external view returns (Record memory) {
        return _records[server];
    }

    /// @inheritdoc ITrustScores
    function params() external view returns (Params memory) {
        return _params;
    }

    /// @inheritdoc ITrustScores
    function trustOf(address server) public view returns (uint256) {
        Record storage r = _records[server];
        Params storage p = _params;
        uint256 credit = uint256(r.passedAudits) * WAD + (uint256(r.paidWork) * WAD) / p.paidPerCredit;
        uint256 penalty = uint256(r.failedAudits) * p.failureWeight * WAD;
        uint256 numerator = uint256(p.priorPass) + credit;
        uint256 rate = (numerator * WAD) / (numerator + p.priorFail + penalty);
        if (r.failedAudits == 0) return rate;
        return (rate * _wadPow((uint256(p.failureRetainBps) * WAD) / BPS, r.failedAudits)) / WAD;
    }

    /// @inheritdoc ITrustScores
    function isTrusted(address server) external view returns (bool) {
        return trustOf(server) >= _params.threshold;
    }

    function _setParams(Params memory p) private {
        bool bad = p.priorPass == 0 || p.priorFail == 0 || p.failureWeight == 0 || p.paidPerCredit == 0;
        if (bad || p.failureRetainBps > BPS || p.threshold > WAD) revert TrustBadParams(p);
        _params = p;
        emit ParamsSet(p);
    }

    /// @dev base^exp for a WAD base in [0, 1e18], by squaring; each product rounds down. At most
    ///      64 rounds (exp is a uint64 count) and never above 1e18, so nothing overflows.
    function _wadPow(uint256 base, uint256 exp) private pure returns (uint256 result) {
        result = WAD;
        while (exp != 0) {
            if (exp & 1 == 1) result = (result * base) / WAD;
            base = (base * base) / WAD;
            exp >>= 1;
        }
    }
}
