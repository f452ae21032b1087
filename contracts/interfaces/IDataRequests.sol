// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReceiptLib} from "../libraries/ReceiptLib.sol";

/// @title Data requests (withheld data on chain)
/// @notice A server that will not produce a committed step's data when an audit asks off chain can be
///         made to post it on chain. A registered verifier names the receipt (batch id, receipt, Merkle
///         proof under the batch's root) inside the batch's challenge window and puts up a bond;
///         the server's stake behind it is locked under this request alone. The server answers within
///         `responsePeriod` by posting the step's input and output activations in calldata; the contract
///         recomputes both activation hashes exactly as protocol/activations.ts does and checks them
///         against the receipt, and emits the data in `DataPosted`, so the requester (and anyone) can
///         audit it off chain. The lock is released and the bond paid to the server.
///
///         Unanswered past the deadline, anyone may call `slashUnanswered`: the locked stake is slashed
///         (part to the requester, the rest to the verifier reward pool), a failed audit is recorded in
///         TrustScores, and the bond is returned to the requester.
///
///         Activation hash (protocol/activations.ts, little-endian, shape and encoding bound in):
///           keccak256("efed.activations.v1" ‖ u8 encoding ‖ u32le rows ‖ u32le cols ‖ payload)
///         with encoding 0 = fp32 (rows·cols·4 bytes), 1 = fp16 (rows·cols·2), 2 = int8 (per row, blocks
///         of 32 columns, each a float32 scale then one byte per value: rows·(⌈cols/32⌉·4 + cols)).
/// @dev Why the answered bond goes to the server (griefing defence): posting a step costs the server
///      gas that grows with the step's size (a 512-token prefill at hidden 256 is ~1 MiB of calldata)
///      while opening a request costs the requester a fixed ~400k gas; if an answered request were free
///      for the requester, a verifier could make honest servers pay for arbitrarily many postings at
///      little cost. With the bond paid to the server, a needless request costs the requester the bond,
///      and governance sizes the bond to the posting cost of a typical step, so a server that withholds
///      off chain only to collect bonds gains nothing beyond its gas (and every on-chain answer is
///      public in `DataPosted`). Only the server may answer: the bond is its compensation.
///
///      Only steps of at most `maxTokens` tokens can be requested: a large prefill does not fit in a
///      transaction (at hidden 4096, 64 tokens in fp16 is over Osaka's 2^24 gas cap), and an honest
///      server must never be slashed for data it could not post. Larger steps go to Disputes. The cap
///      reads the receipt's committed `tokens`, which must equal the step's rows: a server that commits
///      fewer tokens than it computed committed a false receipt, and cannot hide behind the cap.
///
///      One request per receipt, ever (a second request for the same receipt could slash it twice); a
///      receipt already under a dispute in Disputes cannot be requested either. The deadline may fall
///      after the batch's challenge window: the lock is taken in the same transaction that opens the
///      request, and Staking never lets locked stake be withdrawn, so a server that already asked to
///      unbond cannot escape (a slash takes bonded stake first, then unbonding stake).
///
///      This contract holds SLASHER_ROLE in Staking and AUDITOR_ROLE in TrustScores.
///
///      Not covered (left open): a server that refuses to *list* a batch, so that no verifier holds a
///      committed receipt to name. A request "for the receipt at leaf index i" cannot be enforced with
///      Commitments' tree: inner nodes hash sorted pairs, so a proof does not bind a leaf's position,
///      and the server could answer every such request with the same one receipt.
interface IDataRequests {
    enum Status {
        None,
        /// @dev Waiting for the server's answer.
        Open,
        /// @dev The server posted data matching the receipt; lock released, bond paid to the server.
        Answered,
        /// @dev Unanswered past the deadline; the server was slashed, the bond returned.
        Slashed
    }

    struct Params {
        /// @dev What the requester puts up, token base units; paid to the server when it answers.
        uint128 requestBond;
        /// @dev Server stake locked (and slashed if unanswered) per request; less if less is free.
        uint128 serverSlash;
        /// @dev Share of the slashed stake paid to the requester, basis points (the rest: reward pool).
        uint16 requesterShareBps;
        /// @dev Seconds the server has to answer, from the opening; at most Staking's maxDisputeDuration.
        uint32 responsePeriod;
        /// @dev Largest step (receipt tokens) that may be requested: its input and output must fit one
        ///      transaction at the deployment's hidden size (docs/verification.md, "Withheld data on
        ///      chain"). Larger steps are left to Disputes, whose committee asks the server itself.
        uint32 maxTokens;
    }

    /// @notice Encoded activations, as protocol/activations.ts `EncodedActivations`.
    struct Activations {
        /// @dev 0 = fp32, 1 = fp16, 2 = int8 (ENCODING_CODE).
        uint8 encoding;
        uint32 rows;
        uint32 cols;
        bytes payload;
    }

    struct Request {
        address requester;
        address server;
        uint256 batchId;
        /// @dev The requested receipt's leaf (its EIP-712 struct hash).
        bytes32 receiptLeaf;
        /// @dev The receipt's activation hashes, which the answer must reproduce.
        bytes32 inputHash;
        bytes32 outputHash;
        uint128 bond;
        /// @dev Server stake locked for this request.
        uint128 serverLocked;
        uint64 openedAt;
        /// @dev Last second at which the server may answer.
        uint64 deadline;
        /// @dev Share of the slash for the requester, fixed at opening.
        uint16 requesterShareBps;
        Status status;
    }

    /// @notice Only a registered verifier whose bonded stake covers the minimum may request.
    error DataRequestsNotVerifier(address account);
    /// @notice The receipt `leaf` was already requested, as request `requestId`.
    error DataRequestsAlreadyRequested(bytes32 leaf, uint256 requestId);
    /// @notice The receipt `leaf` is the subject of dispute `disputeId`: the committee settles it.
    error DataRequestsReceiptDisputed(bytes32 leaf, uint256 disputeId);
    /// @notice `server` has no stake left that is not already locked.
    error DataRequestsNothingToLock(address server);
    /// @notice The receipt covers `tokens` tokens; steps of more than `maxTokens` cannot be requested.
    error DataRequestsStepTooLarge(uint32 tokens, uint32 maxTokens);
    /// @notice No request has this id.
    error DataRequestsUnknown(uint256 requestId);
    /// @notice Request `requestId` is `status`, not Open.
    error DataRequestsNotOpen(uint256 requestId, Status status);
    /// @notice Only the request's server `server` may answer; `caller` is not it.
    error DataRequestsNotServer(uint256 requestId, address caller, address server);
    /// @notice Request `requestId` could be answered until `deadline`; it is `nowTs`.
    error DataRequestsResponseClosed(uint256 requestId, uint64 deadline, uint64 nowTs);
    /// @notice Request `requestId` is answerable until `deadline`: it can be slashed only after; it is `nowTs`.
    error DataRequestsNotExpired(uint256 requestId, uint64 deadline, uint64 nowTs);
    /// @notice Encoding `encoding` is not 0 (fp32), 1 (fp16) or 2 (int8).
    error DataRequestsBadEncoding(uint8 encoding);
    /// @notice A (`rows`, `cols`) tensor in encoding `encoding` needs `expected` payload bytes, not `length`.
    error DataRequestsBadPayloadLength(uint8 encoding, uint32 rows, uint32 cols, uint256 length, uint256 expected);
    /// @notice The posted input hashes to `posted`, the receipt signs `expected`.
    error DataRequestsInputMismatch(bytes32 posted, bytes32 expected);
    /// @notice The posted output hashes to `posted`, the receipt signs `expected`.
    error DataRequestsOutputMismatch(bytes32 posted, bytes32 expected);
    /// @notice Inconsistent parameters: positive bond, slash, response period and maxTokens, share at most 10⁴ bps,
    ///         response period at most Staking's maxDisputeDuration.
    error DataRequestsBadParams(Params params, uint64 maxDisputeDuration);

    /// @dev Indexed by server (which watches for requests to answer) and requester (which follows its own).
    event DataRequested(
        uint256 indexed requestId,
        address indexed server,
        address indexed requester,
        uint256 batchId,
        bytes32 receiptLeaf,
        uint256 bond,
        uint256 serverLocked,
        uint64 deadline
    );
    /// @notice The server's answer: the step's data, checked against the receipt's hashes.
    event DataPosted(uint256 indexed requestId, address indexed server, bytes32 receiptLeaf, Activations input, Activations output);
    /// @notice The server did not answer: `slashed` taken from it, `toRequester` of that paid to the requester.
    event RequestSlashed(uint256 indexed requestId, address indexed server, uint256 slashed, uint256 toRequester);
    event ParamsSet(Params params);

    /// @notice Requests the data of `receipt`, committed in `batchId` under `proof` (the batch's server
    ///         posted it, which is its attestation: no signature is needed); pulls `requestBond` from the
    ///         caller and locks up to `serverSlash` of the server's stake. Returns the request id (1, 2, …).
    function requestData(
        uint256 batchId,
        ReceiptLib.Receipt calldata receipt,
        bytes32[] calldata proof
    ) external returns (uint256 requestId);

    /// @notice The server answers `requestId` with the step's input and output activations, which must
    ///         hash to the receipt's inputHash and outputHash, before the deadline. Only the server.
    function postData(uint256 requestId, Activations calldata input, Activations calldata output) external;

    /// @notice Slashes the server of an unanswered request after its deadline. Anyone may call.
    function slashUnanswered(uint256 requestId) external;

    /// @notice Sets the parameters (applies to requests opened afterwards). Only GOVERNANCE_ROLE.
    function setParams(Params calldata params) external;

    function request(uint256 requestId) external view returns (Request memory);

    /// @notice The request for the receipt with leaf `leaf`, 0 if none.
    function requestOfReceipt(bytes32 leaf) external view returns (uint256);

    /// @notice The request that slashed the server for withholding the step of receipt `leaf`, 0 if
    ///         none (no request, or one still open or answered). Disputes refuses such a receipt.
    function slashedRequestOfReceipt(bytes32 leaf) external view returns (uint256);

    function requestCount() external view returns (uint256);

    function params() external view returns (Params memory);

    /// @notice The activation hash of `a`, as protocol/activations.ts `activationHash` (validates the
    ///         encoding and the payload length first).
    function activationHash(Activations calldata a) external pure returns (bytes32);

    /// @notice Payload bytes of a (`rows`, `cols`) tensor in `encoding` (protocol/activations.ts
    ///         payloadBytes); reverts on an unknown encoding.
    function payloadBytes(uint8 encoding, uint32 rows, uint32 cols) external pure returns (uint256);
}
