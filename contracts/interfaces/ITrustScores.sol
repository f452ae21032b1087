// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Trust scores
/// @notice Per-server trust, driven by audit outcomes and served work, and the threshold θ below
///         which clients and verifiers drop a server (the eFedLLM paper's filter).
/// @dev The score is a smoothed pass rate, in WAD (1e18 = fully trusted):
///
///          credit = passedAudits·1e18 + tokensServed·1e18 / tokensPerCredit
///          rate   = (priorPass + credit) · 1e18 / (priorPass + priorFail + credit + failureWeight·failedAudits·1e18)
///          trust  = rate · (failureRetainBps / 10⁴) ^ failedAudits
///
///      - A new server starts at priorPass / (priorPass + priorFail) (0.5 with the defaults).
///      - Each passed audit counts as one success; served work that stayed unchallenged counts as a
///        fraction of one (tokensPerCredit tokens = one success), so volume builds trust slowly.
///      - Each failed audit (a lost dispute or withheld data) counts as `failureWeight` failures in
///        the rate and also multiplies the score by failureRetainBps/10⁴ (one half by default), so a
///        caught cheat costs at least that fraction of its trust however much honest work it did
///        before: credit cannot buy immunity. The power is computed by squaring in WAD, rounding down.
///      The audit and dispute logic that moves these numbers holds RECORDER_ROLE; it plugs in without
///      redeploying this contract.
interface ITrustScores {
    struct Record {
        /// @dev Audits of this server's work that matched a re-execution.
        uint64 passedAudits;
        /// @dev Audits that found wrong results or withheld data (lost disputes).
        uint64 failedAudits;
        /// @dev Tokens served in batches whose challenge window closed without a successful challenge.
        uint128 tokensServed;
    }

    struct Params {
        /// @dev Prior successes, WAD.
        uint128 priorPass;
        /// @dev Prior failures, WAD.
        uint128 priorFail;
        /// @dev How many failures one failed audit counts as.
        uint32 failureWeight;
        /// @dev Tokens of unchallenged served work worth one passed audit.
        uint64 tokensPerCredit;
        /// @dev Fraction of its trust a server keeps per failed audit, basis points (at most 10⁴).
        uint16 failureRetainBps;
        /// @dev θ, WAD in [0, 1e18]: servers with trust below it are filtered out.
        uint64 threshold;
    }

    /// @notice The parameters are inconsistent: priors must both be positive, failureWeight and
    ///         tokensPerCredit non-zero, failureRetainBps at most 10⁴, threshold at most 1e18.
    error TrustBadParams(Params params);
    /// @notice The server address must not be zero.
    error TrustZeroServer();
    /// @notice One work record may not exceed 2^128-1 tokens.
    error TrustWorkTooLarge(uint256 tokens);

    /// @notice Emitted when an audit outcome is recorded.
    event AuditRecorded(address indexed server, bool passed, uint256 trust);
    /// @notice Emitted when unchallenged served work is recorded.
    event WorkRecorded(address indexed server, uint256 tokens, uint256 trust);
    /// @notice Emitted when governance changes the parameters.
    event ParamsSet(Params params);

    /// @notice Records one audit outcome for `server`. Only RECORDER_ROLE.
    function recordAudit(address server, bool passed) external;

    /// @notice Records `tokens` of served work whose challenge window closed unchallenged. Only RECORDER_ROLE.
    function recordWork(address server, uint256 tokens) external;

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
