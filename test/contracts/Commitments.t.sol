// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Commitments} from "../../contracts/Commitments.sol";
import {ICommitments} from "../../contracts/interfaces/ICommitments.sol";
import {IStaking} from "../../contracts/interfaces/IStaking.sol";
import {VariantId} from "../../contracts/interfaces/IModelRegistry.sol";
import {ReceiptLib} from "../../contracts/libraries/ReceiptLib.sol";
import {EFedFixture} from "./utils/EFedFixture.sol";

/// @title Fuzz tests of Commitments: batch posting rules, ids, registrations, receipts and Merkle proofs
contract CommitmentsFuzzTest is EFedFixture {
    uint256 internal constant SERVER_PK = 0x5E4E4;
    uint256 internal constant START = 1_700_000_000;

    Commitments internal commitments;
    address internal server;

    function setUp() public {
        _deployCore();
        server = vm.addr(SERVER_PK);
        _makeServer(server, 0, NUM_LAYERS);
        commitments = new Commitments(staking);
        staking.grantRole(staking.COMMITMENTS_ROLE(), address(commitments));
        vm.warp(START);
        vm.roll(1_000);
    }

    function _post(bytes32 root, uint32 count, uint64 fromTime, uint64 toTime) internal returns (uint256 id) {
        vm.prank(server);
        id = commitments.postBatch(root, VARIANT, 0, NUM_LAYERS, count, fromTime, toTime);
    }

    // ------------------------------------------------------------ postBatch

    function testFuzz_PostBatchStoresExactly(bytes32 root, uint32 count, uint64 fromTime, uint64 toTime, uint256 nowTs)
        public
    {
        vm.assume(root != bytes32(0));
        nowTs = bound(nowTs, 1, type(uint64).max - CHALLENGE_WINDOW);
        vm.warp(nowTs);
        count = uint32(bound(count, 1, type(uint32).max));
        toTime = uint64(bound(toTime, 0, nowTs));
        fromTime = uint64(bound(fromTime, 0, toTime));

        uint256 id = _post(root, count, fromTime, toTime);
        assertEq(id, 0, "first batch id");
        ICommitments.Batch memory b = commitments.batch(id);
        assertEq(b.server, server, "server");
        assertEq(b.receiptCount, count, "receiptCount");
        assertEq(b.registrationId, 1, "registrationId");
        assertEq(b.fromTime, fromTime, "fromTime");
        assertEq(b.toTime, toTime, "toTime");
        assertEq(b.postedBlock, block.number, "postedBlock");
        assertEq(b.postedAt, nowTs, "postedAt");
        assertEq(b.challengeDeadline, nowTs + CHALLENGE_WINDOW, "challengeDeadline");
        assertEq(b.firstLayer, 0, "firstLayer");
        assertEq(b.lastLayer, NUM_LAYERS, "lastLayer");
        assertEq(b.stake, staking.minServerStake(NUM_LAYERS), "stake behind the batch");
        assertEq(b.root, root, "root");
        assertEq(VariantId.unwrap(commitments.batchVariant(id)), VariantId.unwrap(VARIANT), "variant");
        assertEq(commitments.batchCount(), 1, "batchCount");
        assertEq(commitments.serverBatchCount(server), 1, "serverBatchCount");
        assertEq(staking.operator(server).slashableUntil, nowTs + CHALLENGE_WINDOW, "stake slashable until the deadline");

        vm.expectRevert(abi.encodeWithSelector(ICommitments.CommitmentsUnknownBatch.selector, uint256(1)));
        commitments.batch(1);
    }

    /// @dev A run of batches with random gaps: ids 0..n-1, each batch's range after the previous one,
    ///      and serverBatchIds pages with a fuzzed offset/limit.
    function testFuzz_PostBatchSequence(uint8 n, uint256 seed, uint256 offset, uint256 limit) public {
        n = uint8(bound(n, 1, 12));
        offset = bound(offset, 0, 15);
        limit = bound(limit, 0, 15);
        uint64 previousTo = uint64(START);
        for (uint256 i = 0; i < n; ++i) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            uint64 fromTime = previousTo + uint64(r % 1000); // may equal the previous toTime
            uint64 toTime = fromTime + uint64((r >> 64) % 1000);
            if (toTime > block.timestamp) vm.warp(toTime);
            uint32 count = uint32(((r >> 128) % 500) + 1);
            uint256 id = _post(keccak256(abi.encode("root", seed, i)), count, fromTime, toTime);
            assertEq(id, i, "sequential id");
            assertEq(commitments.batch(id).fromTime, fromTime, "fromTime");
            assertEq(commitments.batch(id).toTime, toTime, "toTime");
            assertEq(commitments.batch(id).receiptCount, count, "receiptCount");
            previousTo = toTime;
        }
        assertEq(commitments.batchCount(), n, "batchCount");
        assertEq(commitments.serverBatchCount(server), n, "serverBatchCount");

        uint256[] memory page = commitments.serverBatchIds(server, offset, limit);
        uint256 expectedLength = offset >= n ? 0 : (n - offset < limit ? n - offset : limit);
        assertEq(page.length, expectedLength, "page length");
        for (uint256 i = 0; i < page.length; ++i) {
            assertEq(page[i], offset + i, "page entry");
        }
    }

    function testFuzz_PostBatchBeforePreviousRangeReverts(uint64 to1, uint64 from2, uint64 to2) public {
        to1 = uint64(bound(to1, 1, START));
        from2 = uint64(bound(from2, 0, to1 - 1));
        to2 = uint64(bound(to2, from2, START));
        _post(keccak256("first"), 1, 0, to1);
        vm.expectRevert(
            abi.encodeWithSelector(ICommitments.CommitmentsBadTimeRange.selector, from2, to2, to1, uint64(START))
        );
        _post(keccak256("second"), 1, from2, to2);
    }

    function testFuzz_PostBatchBadRangeReverts(uint64 fromTime, uint64 toTime) public {
        // Either reversed (from > to) or ending in the future (to > now).
        vm.assume(fromTime > toTime || toTime > START);
        vm.expectRevert(
            abi.encodeWithSelector(ICommitments.CommitmentsBadTimeRange.selector, fromTime, toTime, 0, uint64(START))
        );
        _post(keccak256("root"), 1, fromTime, toTime);
    }

    function test_PostBatchEmptyOrZeroRootReverts() public {
        vm.expectRevert(abi.encodeWithSelector(ICommitments.CommitmentsEmptyBatch.selector));
        _post(keccak256("root"), 0, 0, uint64(START));
        vm.expectRevert(abi.encodeWithSelector(ICommitments.CommitmentsZeroRoot.selector));
        _post(bytes32(0), 1, 0, uint64(START));
    }

    /// @dev Regression (audit: roots unique across all servers): another server posting the same root
    ///      first does not block this server; the same server cannot post one root twice.
    function testFuzz_RootsAreUniquePerServer(bytes32 root, uint64 at) public {
        vm.assume(root != bytes32(0));
        at = uint64(bound(at, 0, START));
        address other = address(0x07E4);
        _makeServer(other, 0, 1);
        vm.prank(other);
        commitments.postBatch(root, VARIANT, 0, 1, 1, at, at);

        assertEq(_post(root, 1, at, at), 1, "the front-run root is still this server's to post");
        vm.expectRevert(abi.encodeWithSelector(ICommitments.CommitmentsDuplicateRoot.selector, server, root));
        _post(root, 1, at, at);
    }

    function testFuzz_NonServerCannotPost(address caller) public {
        vm.assume(caller != server);
        vm.expectRevert(abi.encodeWithSelector(ICommitments.CommitmentsNotRegistered.selector, caller));
        vm.prank(caller);
        commitments.postBatch(keccak256("root"), VARIANT, 0, NUM_LAYERS, 1, 0, uint64(START));
    }

    /// @dev Regression (audit: a server staked for 1 layer commits 32): a batch must be for exactly
    ///      the caller's registered variant and range.
    function testFuzz_PostBatchOutsideRegistrationReverts(uint16 first, uint16 last, bytes32 variant) public {
        address small = address(0x5A11);
        _makeServer(small, 3, 4);
        vm.assume(first != 3 || last != 4 || variant != VariantId.unwrap(VARIANT));
        vm.expectRevert(
            abi.encodeWithSelector(
                ICommitments.CommitmentsNotRegisteredFor.selector, small, VariantId.wrap(variant), first, last
            )
        );
        vm.prank(small);
        commitments.postBatch(keccak256("root"), VariantId.wrap(variant), first, last, 1, 0, uint64(START));
        vm.prank(small);
        assertEq(commitments.postBatch(keccak256("root"), VARIANT, 3, 4, 1, 0, uint64(START)), 0, "own range posts");
    }

    /// @dev Regression (audit: deregister erased the record): a batch keeps pointing at the registration
    ///      it was posted under after the server re-registers elsewhere and then leaves.
    function test_BatchKeepsItsRegistrationAfterDeregister() public {
        uint256 id = _post(keccak256("root"), 1, 0, uint64(START));
        vm.startPrank(server);
        staking.registerServer(VARIANT, 4, 8, ENDPOINT, 1);
        staking.deregister();
        vm.stopPrank();

        ICommitments.Batch memory b = commitments.batch(id);
        IStaking.Registration memory reg = staking.registration(b.registrationId);
        assertEq(reg.operator, server, "registration operator");
        assertEq(VariantId.unwrap(reg.variant), VariantId.unwrap(VARIANT), "registration variant");
        assertEq(reg.firstLayer, 0, "registration firstLayer");
        assertEq(reg.lastLayer, NUM_LAYERS, "registration lastLayer");
        assertEq(reg.endedAt, START, "registration ended, not erased");
        assertEq(staking.registration(2).firstLayer, 4, "the second registration is its own record");
        assertEq(staking.registration(2).endedAt, START, "the second registration ended at deregister");
        vm.expectRevert(abi.encodeWithSelector(ICommitments.CommitmentsNotRegistered.selector, server));
        _post(keccak256("after"), 1, uint64(START), uint64(START));
    }

    /// @dev Regression (audit: timing changes were retroactive): a batch keeps the deadline of the
    ///      window in force when it was posted, and no withdrawal is ready before that deadline.
    function testFuzz_ChallengeDeadlineIsNotRetroactive(uint64 newWindow) public {
        newWindow = uint64(bound(newWindow, 1, CHALLENGE_WINDOW - 1));
        uint256 id = _post(keccak256("root"), 1, 0, uint64(START));
        staking.setTiming(
            IStaking.Timing({
                challengeWindow: newWindow,
                maxDisputeDuration: 1,
                unbondingDelay: newWindow + 2,
                probationPeriod: PROBATION
            })
        );
        assertEq(commitments.batch(id).challengeDeadline, START + CHALLENGE_WINDOW, "deadline kept");

        _mintAndDeposit(server, 1e18);
        vm.prank(server);
        staking.requestUnbond(1e18);
        uint64 readyAt = uint64(START + CHALLENGE_WINDOW);
        assertEq(staking.withdrawableAt(server), readyAt, "withdrawal waits for the batch's deadline");
        vm.warp(readyAt - 1);
        vm.expectRevert(
            abi.encodeWithSelector(IStaking.StakingUnbondingNotReady.selector, server, readyAt, readyAt - 1)
        );
        vm.prank(server);
        staking.withdraw();
        vm.warp(readyAt);
        vm.prank(server);
        assertEq(staking.withdraw(), 1e18, "withdrawn at the deadline");
    }

    /// @dev An undercollateralized server (minimum raised) still commits the work it did: batches
    ///      record the stake behind them instead of refusing.
    function testFuzz_UndercollateralizedServerStillCommits(uint256 raise) public {
        raise = bound(raise, 1, 1e30);
        staking.setStakeParams(
            IStaking.StakeParams({
                serverBaseStake: SERVER_BASE_STAKE + raise,
                serverStakePerLayer: SERVER_STAKE_PER_LAYER,
                verifierMinStake: VERIFIER_MIN_STAKE
            })
        );
        assertFalse(staking.isActiveServer(server), "not active");
        uint256 id = _post(keccak256("root"), 1, 0, uint64(START));
        assertEq(commitments.batch(id).stake, SERVER_BASE_STAKE + SERVER_STAKE_PER_LAYER * NUM_LAYERS, "stake");
    }

    // ------------------------------------------------------------ receipts

    function _structHash(ReceiptLib.Receipt memory r) internal pure returns (bytes32) {
        bytes memory head = abi.encode(
            keccak256(
                "Receipt(bytes32 sessionId,uint64 step,uint16 firstLayer,uint16 lastLayer,bytes32 variantId,bytes32 inputHash,bytes32 outputHash,uint32 tokens,address server)"
            ),
            r.sessionId,
            r.step,
            r.firstLayer,
            r.lastLayer
        );
        bytes memory tail = abi.encode(r.variantId, r.inputHash, r.outputHash, r.tokens, r.server);
        return keccak256(bytes.concat(head, tail));
    }

    function _hashPair(bytes32 a, bytes32 b) internal pure returns (bytes32) {
        return a < b ? keccak256(abi.encode(a, b)) : keccak256(abi.encode(b, a));
    }

    function testFuzz_ReceiptLeaf(ReceiptLib.Receipt memory r) public view {
        assertEq(commitments.receiptLeaf(r), _structHash(r), "leaf is the EIP-712 struct hash");
    }

    /// @dev A chain over `steps` receipts of one session, built here from the spec's words: head 0 before
    ///      step 0, head_n = keccak256(head_{n-1} ‖ leaf_n); the server's signature over its EIP-712
    ///      digest (Commitments' domain) recovers to the server.
    function testFuzz_ReceiptChainNextDigestAndSigner(ReceiptLib.Receipt memory r, uint8 steps) public view {
        steps = uint8(bound(steps, 1, 8));
        r.server = server;
        bytes32 head = bytes32(0);
        for (uint64 n = 0; n < steps; ++n) {
            r.step = n;
            r.outputHash = keccak256(abi.encode(r.outputHash, n));
            bytes32 leaf = _structHash(r);
            bytes32 next = keccak256(bytes.concat(head, leaf));
            assertEq(commitments.receiptChainNext(head, leaf), next, "chain next");
            head = next;
        }
        ReceiptLib.ReceiptChain memory c =
            ReceiptLib.ReceiptChain({sessionId: r.sessionId, server: server, lastStep: steps - 1, head: head});
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256("ReceiptChain(bytes32 sessionId,address server,uint64 lastStep,bytes32 head)"),
                c.sessionId,
                c.server,
                c.lastStep,
                c.head
            )
        );
        bytes32 domainSeparator = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("eFed Receipts"),
                keccak256("1"),
                block.chainid,
                address(commitments)
            )
        );
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", domainSeparator, structHash));
        assertEq(commitments.receiptChainDigest(c), digest, "chain digest");
        assertEq(commitments.receiptChainSigner(c, signDigest(SERVER_PK, digest)), server, "chain signer");
        c.lastStep += 1;
        assertTrue(commitments.receiptChainDigest(c) != digest, "lastStep is signed");
    }

    /// @dev Two-leaf tree: each receipt proves with the other's leaf; tampering or a foreign server fails.
    function testFuzz_VerifyReceiptInTwoLeafTree(ReceiptLib.Receipt memory r1, uint32 tokensDelta) public {
        r1.server = server;
        r1.firstLayer = 0;
        r1.lastLayer = NUM_LAYERS;
        r1.variantId = VariantId.unwrap(VARIANT);
        r1.step = uint64(bound(r1.step, 0, type(uint64).max - 1));
        r1.tokens = uint32(bound(r1.tokens, 1, type(uint32).max)); // every receipt covers >= 1 token
        ReceiptLib.Receipt memory r2 = ReceiptLib.Receipt({
            sessionId: r1.sessionId,
            step: r1.step + 1,
            firstLayer: r1.firstLayer,
            lastLayer: r1.lastLayer,
            variantId: r1.variantId,
            inputHash: r1.outputHash,
            outputHash: keccak256(abi.encode(r1.outputHash)),
            tokens: 1,
            server: server
        });
        bytes32 leaf1 = _structHash(r1);
        bytes32 leaf2 = _structHash(r2);
        bytes32 root = _hashPair(leaf1, leaf2);
        uint256 id = _post(root, 2, 0, uint64(START));

        bytes32[] memory proof = new bytes32[](1);
        proof[0] = leaf2;
        assertTrue(commitments.verifyReceipt(id, r1, proof), "receipt 1 verifies");
        proof[0] = leaf1;
        assertTrue(commitments.verifyReceipt(id, r2, proof), "receipt 2 verifies");

        // Tampered tokens: the leaf changes, the proof fails.
        tokensDelta = uint32(bound(tokensDelta, 1, type(uint32).max - 1));
        r2.tokens = r2.tokens + tokensDelta;
        assertFalse(commitments.verifyReceipt(id, r2, proof), "tampered receipt rejected");
        // Receipt claiming another server never verifies in this server's batch.
        r2.tokens = 1;
        r2.server = address(0xBAD);
        assertFalse(commitments.verifyReceipt(id, r2, proof), "foreign server rejected");
    }

    /// @dev A receipt under the root whose variant or range is not the batch's registration does not
    ///      verify: work outside the registration cannot be attributed to it.
    function testFuzz_VerifyReceiptOutsideRegistrationFails(ReceiptLib.Receipt memory r, uint16 lastLayer) public {
        r.server = server;
        r.firstLayer = 0;
        lastLayer = uint16(bound(lastLayer, 1, NUM_LAYERS - 1));
        r.lastLayer = lastLayer;
        r.variantId = VariantId.unwrap(VARIANT);
        bytes32 leaf = _structHash(r);
        uint256 id = _post(leaf, 1, 0, uint64(START));
        assertFalse(commitments.verifyReceipt(id, r, new bytes32[](0)), "narrower range rejected");
        r.lastLayer = NUM_LAYERS;
        r.variantId = keccak256("another variant");
        uint256 id2 = _post(_structHash(r), 1, uint64(START), uint64(START));
        assertFalse(commitments.verifyReceipt(id2, r, new bytes32[](0)), "other variant rejected");
        r.variantId = VariantId.unwrap(VARIANT);
        uint256 id3 = _post(_structHash(r), 1, uint64(START), uint64(START));
        assertTrue(commitments.verifyReceipt(id3, r, new bytes32[](0)), "matching receipt verifies");
    }
}
