// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {PaymentChannels} from "../../contracts/PaymentChannels.sol";
import {IPaymentChannels} from "../../contracts/interfaces/IPaymentChannels.sol";
import {EFedFixture} from "./utils/EFedFixture.sol";

/// @title Fuzz tests of PaymentChannels: open, vouchers signed by fuzzed keys, fees, closes
contract PaymentChannelsFuzzTest is EFedFixture {
    address internal constant SERVER = address(0x5E4E4);
    address internal constant POOL = address(0xF00D);
    uint16 internal constant FEE_BPS = 250;
    uint64 internal constant CLOSE_TIMEOUT = 1 days;
    uint256 internal constant MAX_DEPOSIT = 1e30;

    PaymentChannels internal channels;

    function setUp() public {
        _deployCore();
        _makeServer(SERVER, 0, NUM_LAYERS);
        channels = new PaymentChannels(address(this), token, staking, POOL, FEE_BPS, CLOSE_TIMEOUT);
        trust.grantRole(trust.PAYMENTS_ROLE(), address(channels));
        channels.setTrustRecorder(address(trust));
        vm.warp(1_700_000_000); // SERVER registered at t=1: long past its probation
    }

    // ------------------------------------------------------------ helpers

    function _client(uint256 pkSeed) internal view returns (uint256 pk, address client) {
        pk = boundPrivateKey(pkSeed);
        client = vm.addr(pk);
        vm.assume(client != SERVER && client != POOL && client != address(channels) && client != address(this));
    }

    function _open(address client, uint256 amount) internal returns (bytes32 id) {
        token.mint(client, amount);
        vm.startPrank(client);
        token.approve(address(channels), amount);
        id = channels.open(SERVER, amount);
        vm.stopPrank();
    }

    function _voucher(uint256 pk, bytes32 id, uint256 cumulative) internal view returns (bytes memory) {
        return signDigest(pk, channels.voucherDigest(id, cumulative));
    }

    function _redeem(bytes32 id, uint256 cumulative, bytes memory sig) internal {
        vm.prank(SERVER);
        channels.redeem(id, cumulative, sig);
    }

    // ------------------------------------------------------------ open

    function testFuzz_OpenStoresDeposit(uint256 pkSeed, uint256 amount) public {
        (, address client) = _client(pkSeed);
        amount = bound(amount, 1, MAX_DEPOSIT);
        bytes32 expectedId = keccak256(abi.encode(client, SERVER, uint256(0)));
        assertEq(channels.nextChannelId(client, SERVER), expectedId, "nextChannelId");

        bytes32 id = _open(client, amount);
        assertEq(id, expectedId, "channel id");
        IPaymentChannels.Channel memory c = channels.channel(id);
        assertEq(c.client, client, "client");
        assertEq(c.server, SERVER, "server");
        assertEq(c.deposit, amount, "deposit");
        assertEq(c.paid, 0, "paid");
        assertEq(c.closeReadyAt, 0, "closeReadyAt");
        assertFalse(c.closed, "closed");
        assertEq(token.balanceOf(address(channels)), amount, "channels balance");
        assertEq(token.balanceOf(client), 0, "client balance");
        assertEq(
            channels.nextChannelId(client, SERVER),
            keccak256(abi.encode(client, SERVER, uint256(1))),
            "nonce advanced"
        );
    }

    function testFuzz_OpenToInactiveServerReverts(address notServer, uint256 amount) public {
        vm.assume(notServer != SERVER);
        amount = bound(amount, 1, MAX_DEPOSIT);
        token.mint(address(this), amount);
        token.approve(address(channels), amount);
        vm.expectRevert(abi.encodeWithSelector(IPaymentChannels.ChannelServerNotActive.selector, notServer));
        channels.open(notServer, amount);
    }

    /// @dev voucherDigest is the EIP-712 digest of Voucher(bytes32 channelId,uint256 cumulativeAmount)
    ///      under ("eFed Payment Channels", "1", chainid, channels), rebuilt here independently.
    function testFuzz_VoucherDigestIsEip712(bytes32 channelId, uint256 cumulative) public view {
        bytes32 domainSeparator = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("eFed Payment Channels"),
                keccak256("1"),
                block.chainid,
                address(channels)
            )
        );
        bytes32 structHash = keccak256(
            abi.encode(keccak256("Voucher(bytes32 channelId,uint256 cumulativeAmount)"), channelId, cumulative)
        );
        assertEq(
            channels.voucherDigest(channelId, cumulative),
            keccak256(abi.encodePacked("\x19\x01", domainSeparator, structHash)),
            "voucher digest"
        );
    }

    /// @dev Regression (audit: a fresh key started above θ): a newly registered server gets no channel
    ///      until its probation has passed.
    function testFuzz_OpenRefusedDuringProbation(uint256 early) public {
        address fresh = address(0xF4E54);
        _makeServer(fresh, 0, NUM_LAYERS);
        early = bound(early, 0, PROBATION - 1);
        vm.warp(block.timestamp + early);
        token.mint(address(this), 1);
        token.approve(address(channels), 1);
        vm.expectRevert(abi.encodeWithSelector(IPaymentChannels.ChannelServerNotActive.selector, fresh));
        channels.open(fresh, 1);
        vm.warp(block.timestamp + PROBATION - early);
        assertTrue(staking.isEligible(fresh), "eligible once probation passed");
        channels.open(fresh, 1);
    }

    /// @dev Regression (audit: θ enforced nowhere on chain): a server whose trust fell below θ gets no
    ///      new channel.
    function test_OpenRefusedBelowThreshold() public {
        trust.grantRole(trust.AUDITOR_ROLE(), address(this));
        trust.recordAudit(SERVER, false);
        assertLt(trust.trustOf(SERVER), 0.4e18, "trust below theta");
        assertFalse(staking.isEligible(SERVER), "not eligible");
        token.mint(address(this), 1);
        token.approve(address(channels), 1);
        vm.expectRevert(abi.encodeWithSelector(IPaymentChannels.ChannelServerNotActive.selector, SERVER));
        channels.open(SERVER, 1);
    }

    /// @dev Regression (audit: fully locked stake counted as collateral): stake frozen by a dispute does
    ///      not back new channels.
    function test_OpenRefusedWhileStakeLocked() public {
        staking.grantRole(staking.SLASHER_ROLE(), address(this));
        staking.lock(SERVER, keccak256("dispute"), 1);
        assertFalse(staking.isActiveServer(SERVER), "one locked unit leaves the minimum uncovered");
        token.mint(address(this), 1);
        token.approve(address(channels), 1);
        vm.expectRevert(abi.encodeWithSelector(IPaymentChannels.ChannelServerNotActive.selector, SERVER));
        channels.open(SERVER, 1);
        staking.unlock(keccak256("dispute"));
        channels.open(SERVER, 1);
    }

    // ------------------------------------------------------------ redeem

    /// @dev One voucher: server gets min(cum, deposit) - fee, pool gets fee = amount * feeBps / 10000.
    function testFuzz_RedeemPaysExactly(uint256 pkSeed, uint256 amount, uint256 cumulative, uint16 feeBps) public {
        (uint256 pk, address client) = _client(pkSeed);
        amount = bound(amount, 1, MAX_DEPOSIT);
        cumulative = bound(cumulative, 1, 2 * MAX_DEPOSIT);
        feeBps = uint16(bound(feeBps, 0, channels.MAX_FEE_BPS()));
        channels.setFee(feeBps);
        bytes32 id = _open(client, amount);

        uint256 serverBefore = token.balanceOf(SERVER);
        _redeem(id, cumulative, _voucher(pk, id, cumulative));

        uint256 paid = cumulative < amount ? cumulative : amount;
        uint256 fee = (paid * feeBps) / 10_000;
        assertEq(channels.channel(id).paid, paid, "paid");
        assertEq(token.balanceOf(SERVER) - serverBefore, paid - fee, "server received");
        assertEq(token.balanceOf(POOL), fee, "pool received the fee");
        assertEq(token.balanceOf(address(channels)), amount - paid, "channels keeps the rest");
        assertEq(trust.record(SERVER).paidWork, paid, "the payment is the server's credited work");
    }

    /// @dev Two increasing vouchers: the second pays only the increase, still capped at the deposit.
    function testFuzz_RedeemTwoVouchersPaysIncrease(
        uint256 pkSeed,
        uint256 amount,
        uint256 cum1,
        uint256 cum2,
        uint16 feeBps
    ) public {
        (uint256 pk, address client) = _client(pkSeed);
        amount = bound(amount, 1, MAX_DEPOSIT);
        cum1 = bound(cum1, 1, 2 * MAX_DEPOSIT - 1);
        cum2 = bound(cum2, cum1 + 1, 2 * MAX_DEPOSIT);
        feeBps = uint16(bound(feeBps, 0, channels.MAX_FEE_BPS()));
        channels.setFee(feeBps);
        bytes32 id = _open(client, amount);

        _redeem(id, cum1, _voucher(pk, id, cum1));
        uint256 paid1 = cum1 < amount ? cum1 : amount;
        uint256 fee1 = (paid1 * feeBps) / 10_000;
        uint256 paid2 = cum2 < amount ? cum2 : amount;
        bytes memory sig2 = _voucher(pk, id, cum2);

        if (paid2 == paid1) {
            vm.expectRevert(abi.encodeWithSelector(IPaymentChannels.ChannelDepositExhausted.selector, id, amount));
            _redeem(id, cum2, sig2);
            return;
        }
        uint256 serverBefore = token.balanceOf(SERVER);
        _redeem(id, cum2, sig2);
        uint256 fee2 = ((paid2 - paid1) * feeBps) / 10_000;
        assertEq(channels.channel(id).paid, paid2, "paid after second voucher");
        assertEq(token.balanceOf(SERVER) - serverBefore, paid2 - paid1 - fee2, "second payment");
        assertEq(token.balanceOf(POOL), fee1 + fee2, "fees of both redemptions");
        assertEq(token.balanceOf(address(channels)), amount - paid2, "channels balance");
    }

    function testFuzz_RedeemNonIncreasingVoucherReverts(uint256 pkSeed, uint256 amount, uint256 cum1, uint256 cum2)
        public
    {
        (uint256 pk, address client) = _client(pkSeed);
        amount = bound(amount, 1, MAX_DEPOSIT);
        cum1 = bound(cum1, 1, amount);
        cum2 = bound(cum2, 0, cum1);
        bytes32 id = _open(client, amount);
        _redeem(id, cum1, _voucher(pk, id, cum1));

        bytes memory sig2 = _voucher(pk, id, cum2);
        vm.expectRevert(
            abi.encodeWithSelector(IPaymentChannels.ChannelVoucherNotIncreasing.selector, id, cum2, cum1)
        );
        _redeem(id, cum2, sig2);
    }

    function testFuzz_RedeemForeignSignerReverts(uint256 pkSeed, uint256 otherSeed, uint256 amount, uint256 cum)
        public
    {
        (, address client) = _client(pkSeed);
        uint256 otherPk = boundPrivateKey(otherSeed);
        address other = vm.addr(otherPk);
        vm.assume(other != client);
        amount = bound(amount, 1, MAX_DEPOSIT);
        cum = bound(cum, 1, amount);
        bytes32 id = _open(client, amount);

        bytes memory sig = _voucher(otherPk, id, cum);
        vm.expectRevert(
            abi.encodeWithSelector(IPaymentChannels.ChannelBadVoucherSigner.selector, id, other, client)
        );
        _redeem(id, cum, sig);
    }

    /// @dev A voucher for one amount cannot be replayed for another, nor on another channel.
    function testFuzz_VoucherBindsAmountAndChannel(uint256 pkSeed, uint256 amount, uint256 cum, uint256 claimed)
        public
    {
        (uint256 pk, address client) = _client(pkSeed);
        amount = bound(amount, 1, MAX_DEPOSIT);
        cum = bound(cum, 1, amount);
        claimed = bound(claimed, 1, 2 * MAX_DEPOSIT);
        vm.assume(claimed != cum);
        bytes32 id1 = _open(client, amount);
        bytes32 id2 = _open(client, amount);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, channels.voucherDigest(id1, cum));
        bytes memory sig = abi.encodePacked(r, s, v);

        // The same signature over another amount or channel recovers some unrelated address.
        address wrongAmount = ecrecover(channels.voucherDigest(id1, claimed), v, r, s);
        address wrongChannel = ecrecover(channels.voucherDigest(id2, cum), v, r, s);
        assertTrue(wrongAmount != client && wrongChannel != client, "replay recovers another signer");
        vm.expectRevert(
            abi.encodeWithSelector(IPaymentChannels.ChannelBadVoucherSigner.selector, id1, wrongAmount, client)
        );
        _redeem(id1, claimed, sig);
        vm.expectRevert(
            abi.encodeWithSelector(IPaymentChannels.ChannelBadVoucherSigner.selector, id2, wrongChannel, client)
        );
        _redeem(id2, cum, sig);
        assertEq(channels.channel(id1).paid, 0, "nothing paid on channel 1");
        assertEq(channels.channel(id2).paid, 0, "nothing paid on channel 2");
    }

    function testFuzz_OnlyServerRedeems(uint256 pkSeed, address caller, uint256 amount) public {
        (uint256 pk, address client) = _client(pkSeed);
        vm.assume(caller != SERVER);
        amount = bound(amount, 1, MAX_DEPOSIT);
        bytes32 id = _open(client, amount);
        bytes memory sig = _voucher(pk, id, amount);
        vm.expectRevert(abi.encodeWithSelector(IPaymentChannels.ChannelUnauthorized.selector, id, caller, SERVER));
        vm.prank(caller);
        channels.redeem(id, amount, sig);
    }

    // ------------------------------------------------------------ top-up and close

    function testFuzz_TopUpRaisesCap(uint256 pkSeed, uint256 amount, uint256 extra, uint256 cum) public {
        (uint256 pk, address client) = _client(pkSeed);
        amount = bound(amount, 1, MAX_DEPOSIT);
        extra = bound(extra, 1, MAX_DEPOSIT);
        cum = bound(cum, amount + 1, 3 * MAX_DEPOSIT);
        bytes32 id = _open(client, amount);
        _redeem(id, amount, _voucher(pk, id, amount));

        token.mint(client, extra);
        vm.startPrank(client);
        token.approve(address(channels), extra);
        channels.topUp(id, extra);
        vm.stopPrank();
        assertEq(channels.channel(id).deposit, amount + extra, "deposit after top-up");

        _redeem(id, cum, _voucher(pk, id, cum));
        uint256 total = cum < amount + extra ? cum : amount + extra;
        assertEq(channels.channel(id).paid, total, "paid after top-up");
        uint256 fees = (amount * FEE_BPS) / 10_000 + ((total - amount) * FEE_BPS) / 10_000;
        assertEq(token.balanceOf(SERVER), total - fees, "server total");
        assertEq(token.balanceOf(POOL), fees, "pool total");
    }

    /// @dev Client close: refund = deposit - paid, only after the timeout; server may redeem meanwhile.
    function testFuzz_ClientCloseRefundsRemainder(
        uint256 pkSeed,
        uint256 amount,
        uint256 cum1,
        uint256 cum2,
        uint256 lateBy
    ) public {
        (uint256 pk, address client) = _client(pkSeed);
        amount = bound(amount, 2, MAX_DEPOSIT);
        cum1 = bound(cum1, 1, amount - 1);
        cum2 = bound(cum2, cum1 + 1, amount);
        lateBy = bound(lateBy, 0, 30 days);
        bytes32 id = _open(client, amount);
        _redeem(id, cum1, _voucher(pk, id, cum1));

        vm.prank(client);
        channels.startClose(id);
        uint64 readyAt = uint64(block.timestamp + CLOSE_TIMEOUT);
        assertEq(channels.channel(id).closeReadyAt, readyAt, "closeReadyAt");

        // Redeeming stays possible while the close is pending.
        _redeem(id, cum2, _voucher(pk, id, cum2));

        vm.warp(readyAt - 1);
        vm.expectRevert(
            abi.encodeWithSelector(IPaymentChannels.ChannelCloseNotReady.selector, id, readyAt, readyAt - 1)
        );
        vm.prank(client);
        channels.finishClose(id);

        vm.warp(uint256(readyAt) + lateBy);
        vm.prank(client);
        channels.finishClose(id);
        assertEq(token.balanceOf(client), amount - cum2, "refund");
        assertTrue(channels.channel(id).closed, "closed");
        assertEq(token.balanceOf(address(channels)), 0, "channels emptied");
        uint256 fees = (cum1 * FEE_BPS) / 10_000 + ((cum2 - cum1) * FEE_BPS) / 10_000;
        assertEq(token.balanceOf(SERVER) + token.balanceOf(POOL), cum2, "server + pool got what was paid");
        assertEq(token.balanceOf(POOL), fees, "fees");

        bytes memory late = _voucher(pk, id, amount);
        vm.expectRevert(abi.encodeWithSelector(IPaymentChannels.ChannelIsClosed.selector, id));
        _redeem(id, amount, late);
    }

    function testFuzz_ServerCloseRefundsAtOnce(uint256 pkSeed, uint256 amount, uint256 cum) public {
        (uint256 pk, address client) = _client(pkSeed);
        amount = bound(amount, 1, MAX_DEPOSIT);
        cum = bound(cum, 0, amount);
        bytes32 id = _open(client, amount);
        if (cum != 0) _redeem(id, cum, _voucher(pk, id, cum));
        vm.prank(SERVER);
        channels.closeByServer(id);
        assertEq(token.balanceOf(client), amount - cum, "refund");
        assertEq(token.balanceOf(address(channels)), 0, "channels emptied");
    }

    /// @dev redeemAndClose = redeem + closeByServer in one call: server gets min(cum, deposit) - fee,
    ///      the pool the fee, the client the rest, and the channel is closed.
    function testFuzz_RedeemAndCloseSettlesAtOnce(uint256 pkSeed, uint256 amount, uint256 cumulative, uint16 feeBps)
        public
    {
        (uint256 pk, address client) = _client(pkSeed);
        amount = bound(amount, 1, MAX_DEPOSIT);
        cumulative = bound(cumulative, 1, 2 * MAX_DEPOSIT);
        feeBps = uint16(bound(feeBps, 0, channels.MAX_FEE_BPS()));
        channels.setFee(feeBps);
        bytes32 id = _open(client, amount);

        bytes memory sig = _voucher(pk, id, cumulative);
        vm.prank(SERVER);
        channels.redeemAndClose(id, cumulative, sig);

        uint256 paid = cumulative < amount ? cumulative : amount;
        uint256 fee = (paid * feeBps) / 10_000;
        IPaymentChannels.Channel memory c = channels.channel(id);
        assertTrue(c.closed, "closed");
        assertEq(c.paid, paid, "paid");
        assertEq(token.balanceOf(SERVER), paid - fee, "server received");
        assertEq(token.balanceOf(POOL), fee, "pool received");
        assertEq(token.balanceOf(client), amount - paid, "client refunded");
        assertEq(token.balanceOf(address(channels)), 0, "channels emptied");
    }

    /// @dev A stale voucher makes redeemAndClose revert as a whole: the channel stays open and funded.
    function testFuzz_RedeemAndCloseWithStaleVoucherReverts(uint256 pkSeed, uint256 amount, uint256 cum1, uint256 cum2)
        public
    {
        (uint256 pk, address client) = _client(pkSeed);
        amount = bound(amount, 1, MAX_DEPOSIT);
        cum1 = bound(cum1, 1, amount);
        cum2 = bound(cum2, 0, cum1);
        bytes32 id = _open(client, amount);
        _redeem(id, cum1, _voucher(pk, id, cum1));

        bytes memory sig = _voucher(pk, id, cum2);
        vm.expectRevert(
            abi.encodeWithSelector(IPaymentChannels.ChannelVoucherNotIncreasing.selector, id, cum2, cum1)
        );
        vm.prank(SERVER);
        channels.redeemAndClose(id, cum2, sig);
        assertFalse(channels.channel(id).closed, "still open");
        assertEq(token.balanceOf(address(channels)), amount - cum1, "still funded");
    }

    function testFuzz_SetFeeAboveMaxReverts(uint16 feeBps) public {
        feeBps = uint16(bound(feeBps, channels.MAX_FEE_BPS() + 1, type(uint16).max));
        vm.expectRevert(
            abi.encodeWithSelector(IPaymentChannels.ChannelFeeTooHigh.selector, feeBps, channels.MAX_FEE_BPS())
        );
        channels.setFee(feeBps);
    }
}
