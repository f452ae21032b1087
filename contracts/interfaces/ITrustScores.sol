// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Trust scores
/// @notice Per-server trust, driven by audit outcomes and paid work, and the threshold θ below which
///         clients and verifiers drop a server (the eFedLLM paper's filter). `IStaking.isEligible`
///         enforces θ on chain: PaymentChannels opens no channel to a server under it.
/// @dev The score is a smoothed pass rate, in WAD (1e18 = fully trusted):
///
///          credit = passedAudits·1e18 + paidWork·1e18 / paidPerCredit
///          rate   = (priorPass + credit) · 1e18 / (priorPass + priorFail + credit + failureWeight·failedAudits·1e18)
///          trust  = rate · (failureRetainBps / 10⁴) ^ failedAudits
///
///      - Credit comes only from work someone else vouched for: an audit that re-executed it
///        (AUDITOR_ROLE, the dispute/audit contract), or a client's payment redeemed through a channel
///        (PAYMENTS_ROLE, PaymentChannels), counted in token base units paid. Nothing a server reports
///        about itself (such as the tokens under a batch) is ever credited. Paying oneself through a
///        channel costs the protocol fee on every redemption, so bought credit costs
///        feeBps/10⁴ · paidPerCredit tokens per unit.
///      - Each failed audit (a lost dispute or withheld data) counts as `failureWeight` failures in
///        the rate and also multiplies the score by failureRetainBps/10⁴ (one half by default), so a
///        caught cheat costs at least that fraction of its trust however much honest work it did
///        before: credit cannot buy immunity. The power is computed by squaring in WAD, rounding down.
interface ITrustScores {
    struct Record {
        /// @dev Audits of this server's work that matched a re-execution.
        uint64 passedAudits;
        /// @dev Audits that found wrong results or withheld data (lost disputes).
        uint64 failedAudits;
        /// @dev Token base units clients paid this server through channels (saturates at 2^128-1).
        uint128 paidWork;
    }

    struct Params {
        /// @dev Prior successes, WAD.
        uint128 priorPass;
        /// @dev Prior failures, WAD.
        uint128 priorFail;
        /// @dev Token base units of paid work worth one passed audit.
        uint128 paidPerCredit;
        /// @dev How many failures one failed audit counts as.
        uint32 failureWeight;
        /// @dev Fraction of its trust a server keeps per failed audit, basis points (at most 10⁴).
        uint16 failureRetainBps;
        /// @dev θ, WAD in [0, 1e18]: servers with trust below it are filtered out.
        uint64 threshold;
    }

    /// @notice The parameters are inconsistent: priors must both be positive, failureWeight and
    ///         paidPerCredit non-zero, failureRetainBps at most 10⁴, threshold at most 1e18.
    error TrustBadParams(Params params);
    /// @notice The server address must not be zero.
    error TrustZeroServer();
    /// @notice A count of passed audits must be positive.
    error TrustZeroCount();

    /// @notice Emitted when an audit outcome is recorded.
    event AuditRecorded(address indexed server, bool passed, uint256 trust);
    /// @notice `count` passed audits of `server` were recorded at once.
    event AuditsPassed(address indexed server, uint256 count, uint256 trust);
    /// @notice Emitted when a channel redemption paid `server` `amount`.
    event PaymentRecorded(address indexed server, uint256 amount, uint256 trust);
    /// @notice Emitted when governance changes the parameters.
    event ParamsSet(Params params);

    /// @notice Records one audit outcome for `server`. Only AUDITOR_ROLE (the dispute/audit logic).
    function recordAudit(address server, bool passed) external;

    /// @notice Records `count` passed audits of `server` at once (one transaction for a verifier's
    ///         passes of a batch). Only AUDITOR_ROLE.
    function recordPassedAudits(address server, uint64 count) external;

    /// @notice Records that a client paid `server` `amount` token base units through a channel.
    ///         Only PAYMENTS_ROLE (PaymentChannels, on redemption). Never reverts on size: saturates.
    function recordPayment(address server, uint256 amount) external;

    /// @notice Sets the formula's parameters. Only GOVERNANCE_ROLE.
    function setParams(Params calldata params) external;

    /// @notice The raw counters of `server`.
    function record(address server) external view returns (Record memory);

    /// @notice The current parameters.
    function params() external view returns (Params memory);

    /// @notice Trust of `server` in WAD, per the formula above.
    function trustOf(address server) external view returns (uint256);

    /// @notice True when `trustOf(server) >= threshold`.
    function isTrusted(address server) external view returns (bool);
}
