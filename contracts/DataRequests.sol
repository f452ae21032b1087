// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ICommitments} from "./interfaces/ICommitments.sol";
import {IDataRequests} from "./interfaces/IDataRequests.sol";
import {IDisputes} from "./interfaces/IDisputes.sol";
import {IStaking} from "./interfaces/IStaking.sol";
import {ITrustScores} from "./interfaces/ITrustScores.sol";
import {ReceiptLib} from "./libraries/ReceiptLib.sol";

/// @title Data requests (withheld data on chain)
/// @notice See {IDataRequests}.
contract DataRequests is IDataRequests, AccessControl {
    using SafeERC20 for IERC20;
    using ReceiptLib for ReceiptLib.Receipt;

    /// @notice Role allowed to change the parameters.
    bytes32 public constant GOVERNANCE_ROLE = keccak256("GOVERNANCE_ROLE");
    /// @notice Columns per int8 block (protocol/activations.ts INT8_BLOCK).
    uint256 public constant INT8_BLOCK = 32;
    uint256 private constant BPS = 10_000;
    /// @dev "efed.activations.v1", left-aligned: bytes 0..18 of the 28-byte hash header.
    bytes32 private constant HASH_DOMAIN = bytes32(bytes19("efed.activations.v1"));
    uint256 private constant HEADER_BYTES = 28;

    IERC20 public immutable token;
    IStaking public immutable staking;
    ICommitments public immutable commitments;
    IDisputes public immutable disputes;
    ITrustScores public immutable trust;
    /// @notice Where the part of a slash not paid to the requester goes (the verifier reward pool).
    address public immutable rewardPool;

    Params private _params;
    /// @dev Index 0 is unused, so that request id 0 means "none".
    Request[] private _requests;
    mapping(bytes32 leaf => uint256 requestId) private _requestOfReceipt;

    constructor(
        address admin,
        IERC20 token_,
        IStaking staking_,
        ICommitments commitments_,
        IDisputes disputes_,
        ITrustScores trust_,
        address rewardPool_,
        Params memory params_
    ) {
        token = token_;
        staking = staking_;
        commitments = commitments_;
        disputes = disputes_;
        trust = trust_;
        rewardPool = rewardPool_;
        _requests.push();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(GOVERNANCE_ROLE, admin);
        _setParams(params_);
    }

    /// @inheritdoc IDataRequests
    function requestData(
        uint256 batchId,
        ReceiptLib.Receipt calldata receipt,
        bytes32[] calldata proof
    ) external returns (uint256 requestId) {
        if (!staking.isActiveVerifier(msg.sender)) revert DataRequestsNotVerifier(msg.sender);
        Params memory p = _params;
        if (receipt.tokens > p.maxTokens) revert DataRequestsStepTooLarge(receipt.tokens, p.maxTokens);
        (address server, bytes32 leaf) = ReceiptLib.checkCommitted(commitments, batchId, receipt, proof);
        _checkUnrequested(leaf);
        uint256 toLock = _free(server);
        if (toLock > p.serverSlash) toLock = p.serverSlash;
        if (toLock == 0) revert DataRequestsNothingToLock(server);

        requestId = _requests.length;
        Request storage r = _requests.push();
        r.requester = msg.sender;
        r.server = server;
        r.batchId = batchId;
        r.receiptLeaf = leaf;
        r.inputHash = receipt.inputHash;
        r.outputHash = receipt.outputHash;
        r.bond = p.requestBond;
        r.serverLocked = uint128(toLock); // toLock <= serverSlash, a uint128
        r.openedAt = uint64(block.timestamp);
        r.deadline = uint64(block.timestamp) + p.responsePeriod;
        r.requesterShareBps = p.requesterShareBps;
        r.status = Status.Open;
        _requestOfReceipt[leaf] = requestId;
        emit DataRequested(requestId, server, msg.sender, batchId, leaf, p.requestBond, toLock, r.deadline);
        staking.lock(server, _lockId(requestId), toLock);
        token.safeTransferFrom(msg.sender, address(this), p.requestBond);
    }

    /// @inheritdoc IDataRequests
    function postData(uint256 requestId, Activations calldata input, Activations calldata output) external {
        Request storage r = _open(requestId);
        if (msg.sender != r.server) revert DataRequestsNotServer(requestId, msg.sender, r.server);
        if (block.timestamp > r.deadline) revert DataRequestsResponseClosed(requestId, r.deadline, uint64(block.timestamp));
        bytes32 inputHash = activationHash(input);
        if (inputHash != r.inputHash) revert DataRequestsInputMismatch(inputHash, r.inputHash);
        bytes32 outputHash = activationHash(output);
        if (outputHash != r.outputHash) revert DataRequestsOutputMismatch(outputHash, r.outputHash);

        r.status = Status.Answered;
        emit DataPosted(requestId, r.server, r.receiptLeaf, input, output);
        staking.unlock(_lockId(requestId));
        if (r.bond != 0) token.safeTransfer(r.server, r.bond);
    }

    /// @inheritdoc IDataRequests
    function slashUnanswered(uint256 requestId) external {
        Request storage r = _open(requestId);
        if (block.timestamp <= r.deadline) revert DataRequestsNotExpired(requestId, r.deadline, uint64(block.timestamp));
        r.status = Status.Slashed;
        bytes32 lockId = _lockId(requestId);
        uint256 slashed = staking.lockOf(address(this), lockId).amount;
        uint256 toRequester = (slashed * r.requesterShareBps) / BPS;
        emit RequestSlashed(requestId, r.server, slashed, toRequester);
        if (toRequester != 0) staking.slash(lockId, toRequester, r.requester);
        if (slashed != toRequester) staking.slash(lockId, slashed - toRequester, rewardPool);
        staking.unlock(lockId);
        trust.recordAudit(r.server, false);
        if (r.bond != 0) token.safeTransfer(r.requester, r.bond);
    }

    /// @inheritdoc IDataRequests
    function setParams(Params calldata params_) external onlyRole(GOVERNANCE_ROLE) {
        _setParams(params_);
    }

    /// @inheritdoc IDataRequests
    function request(uint256 requestId) external view returns (Request memory) {
        return _known(requestId);
    }

    /// @inheritdoc IDataRequests
    function requestOfReceipt(bytes32 leaf) external view returns (uint256) {
        return _requestOfReceipt[leaf];
    }

    /// @inheritdoc IDataRequests
    function slashedRequestOfReceipt(bytes32 leaf) external view returns (uint256 requestId) {
        requestId = _requestOfReceipt[leaf];
        if (requestId != 0 && _requests[requestId].status != Status.Slashed) requestId = 0;
    }

    /// @inheritdoc IDataRequests
    function requestCount() external view returns (uint256) {
        return _requests.length - 1;
    }

    /// @inheritdoc IDataRequests
    function params() external view returns (Params memory) {
        return _params;
    }

    /// @inheritdoc IDataRequests
    function activationHash(Activations calldata a) public pure returns (bytes32 h) {
        uint256 expected = payloadBytes(a.encoding, a.rows, a.cols);
        if (a.payload.length != expected) {
            revert DataRequestsBadPayloadLength(a.encoding, a.rows, a.cols, a.payload.length, expected);
        }
        bytes32 header = HASH_DOMAIN |
            bytes32(uint256(a.encoding) << 96) |
            bytes32(uint256(_littleEndian32(a.rows)) << 64) |
            bytes32(uint256(_littleEndian32(a.cols)) << 32);
        bytes calldata payload = a.payload;
        // Hashes header ‖ payload in memory past the free pointer without moving it: the memory is
        // scratch, reused by the second hash, so posting costs memory for one tensor, not two (memory
        // cost is quadratic in its size: abi.encodePacked would keep both copies, and more).
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            let at := mload(0x40)
            mstore(at, header)
            calldatacopy(add(at, HEADER_BYTES), payload.offset, payload.length)
            h := keccak256(at, add(HEADER_BYTES, payload.length))
        }
    }

    /// @inheritdoc IDataRequests
    function payloadBytes(uint8 encoding, uint32 rows, uint32 cols) public pure returns (uint256) {
        // rows, cols < 2^32: every product below is < 2^72, far from overflow.
        if (encoding == 0) return uint256(rows) * cols * 4;
        if (encoding == 1) return uint256(rows) * cols * 2;
        if (encoding == 2) return uint256(rows) * (((uint256(cols) + INT8_BLOCK - 1) / INT8_BLOCK) * 4 + cols);
        revert DataRequestsBadEncoding(encoding);
    }

    // ---------------------------------------------------------------- internals

    /// @dev One request per receipt, and none for a disputed one (its committee settles it; one
    ///      punishment per step, Disputes refuses the reverse).
    function _checkUnrequested(bytes32 leaf) private view {
        uint256 existing = _requestOfReceipt[leaf];
        if (existing != 0) revert DataRequestsAlreadyRequested(leaf, existing);
        uint256 disputeId = disputes.disputeOfReceipt(leaf);
        if (disputeId != 0) revert DataRequestsReceiptDisputed(leaf, disputeId);
    }

    /// @dev Stake of `account` not yet locked by any dispute or request.
    function _free(address account) private view returns (uint256) {
        IStaking.Operator memory op = staking.operator(account);
        return op.bonded + op.unbonding - op.locked; // Staking keeps locked <= bonded + unbonding
    }

    function _known(uint256 requestId) private view returns (Request storage) {
        if (requestId == 0 || requestId >= _requests.length) revert DataRequestsUnknown(requestId);
        return _requests[requestId];
    }

    function _open(uint256 requestId) private view returns (Request storage r) {
        r = _known(requestId);
        if (r.status != Status.Open) revert DataRequestsNotOpen(requestId, r.status);
    }

    function _lockId(uint256 requestId) private pure returns (bytes32) {
        return keccak256(abi.encode("data", requestId));
    }

    /// @dev `v` with its four bytes reversed, so that its big-endian bytes are `v` little-endian.
    function _littleEndian32(uint32 v) private pure returns (uint32) {
        return (v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
    }

    function _setParams(Params memory p) private {
        uint64 maxDuration = staking.timing().maxDisputeDuration;
        bool badAmounts = p.requestBond == 0 || p.serverSlash == 0 || p.requesterShareBps > BPS;
        if (badAmounts || p.maxTokens == 0 || p.responsePeriod == 0 || p.responsePeriod > maxDuration) {
            revert DataRequestsBadParams(p, maxDuration);
        }
        _params = p;
        emit ParamsSet(p);
    }
}
