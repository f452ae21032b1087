// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EFedToken} from "../../../contracts/EFedToken.sol";
import {PaymentChannels} from "../../../contracts/PaymentChannels.sol";
import {IPaymentChannels} from "../../../contracts/interfaces/IPaymentChannels.sol";
import {Cheats} from "./TestBase.sol";

/// @title Invariant handler for PaymentChannels
/// @notice Three clients (known private keys, so vouchers are really signed) open channels to two
///         servers, top up, sign and redeem vouchers, forge vouchers, close either way; governance
///         moves the fee. Ghost totals record every token that entered or left the channels contract,
///         and each call's outcome is checked against what the spec says it should be: an action that
///         should succeed but reverts, or should revert but succeeds, or pays a different amount than
///         expected, flips a flag the invariants assert on. Time is a ghost clock re-applied each call.
contract ChannelsHandler is Cheats {
    PaymentChannels public channels;
    EFedToken public token;
    address public pool;
    uint64 public closeTimeout;
    uint256 public constant MAX_DEPOSIT = 1_000_000e18;

    uint256[] internal _clientKeys;
    address[] internal _clients;
    address[] internal _servers;
    mapping(address client => uint256) internal _keyOf;
    bytes32[] internal _ids;

    uint256 public currentTime;

    uint256 public totalDeposited; // opens + top-ups
    uint256 public totalToServers;
    uint256 public totalFees;
    uint256 public totalRefunds;
    mapping(address client => uint256) public refundsTo;

    /// @dev The first mismatch between an outcome and the spec, if any ("" when none).
    string public mismatch;

    uint256 public redemptions;
    uint256 public closes;

    constructor(
        PaymentChannels channels_,
        EFedToken token_,
        address pool_,
        uint256[] memory clientKeys_,
        address[] memory servers_
    ) {
        channels = channels_;
        token = token_;
        pool = pool_;
        closeTimeout = channels_.closeTimeout();
        _servers = servers_;
        for (uint256 i = 0; i < clientKeys_.length; ++i) {
            address client = vm.addr(clientKeys_[i]);
            _clientKeys.push(clientKeys_[i]);
            _clients.push(client);
            _keyOf[client] = clientKeys_[i];
        }
        currentTime = block.timestamp;
    }

    modifier useTime() {
        vm.warp(currentTime);
        _;
    }

    function channelIds() external view returns (bytes32[] memory) {
        return _ids;
    }

    function clients() external view returns (address[] memory) {
        return _clients;
    }

    function servers() external view returns (address[] memory) {
        return _servers;
    }

    function _flag(string memory what) internal {
        if (bytes(mismatch).length == 0) mismatch = what;
    }

    /// @dev Picks a channel, or returns false when none exists yet.
    function _pick(uint256 seed) internal view returns (bool ok, bytes32 id, IPaymentChannels.Channel memory c) {
        if (_ids.length == 0) return (false, bytes32(0), c);
        id = _ids[seed % _ids.length];
        c = channels.channel(id);
        ok = true;
    }

    function _fund(address client, uint256 amount) internal {
        token.transfer(client, amount);
        vm.prank(client);
        token.approve(address(channels), amount);
    }

    // ------------------------------------------------------------ actions

    function warp(uint256 secondsAhead) external {
        currentTime += bound(secondsAhead, 0, 2 days);
        vm.warp(currentTime);
    }

    function setFee(uint256 feeBps) external useTime {
        channels.setFee(uint16(bound(feeBps, 0, channels.MAX_FEE_BPS())));
    }

    function open(uint256 clientSeed, uint256 serverSeed, uint256 amount) external useTime {
        address client = _clients[clientSeed % _clients.length];
        address server = _servers[serverSeed % _servers.length];
        amount = bound(amount, 1, MAX_DEPOSIT);
        _fund(client, amount);
        bytes32 expectedId = channels.nextChannelId(client, server);
        vm.prank(client);
        try channels.open(server, amount) returns (bytes32 id) {
            if (id != expectedId) _flag("open: unexpected channel id");
            _ids.push(id);
            totalDeposited += amount;
        } catch {
            _flag("open reverted for an active server");
        }
    }

    function topUp(uint256 channelSeed, uint256 amount) external useTime {
        (bool ok, bytes32 id, IPaymentChannels.Channel memory c) = _pick(channelSeed);
        if (!ok) return;
        amount = bound(amount, 1, MAX_DEPOSIT);
        _fund(c.client, amount);
        bool shouldWork = !c.closed && c.closeReadyAt == 0;
        vm.prank(c.client);
        try channels.topUp(id, amount) {
            if (!shouldWork) _flag("topUp succeeded on a closed or closing channel");
            totalDeposited += amount;
        } catch {
            if (shouldWork) _flag("topUp reverted on an open channel");
            // Give the unused float back so wallets only hold refunds.
            vm.startPrank(c.client);
            token.approve(address(channels), 0);
            token.transfer(address(this), amount);
            vm.stopPrank();
        }
    }

    /// @dev What the spec says a redemption of `cumulative` on `c` does.
    struct Expected {
        bool shouldWork;
        uint256 newPaid;
        uint256 toServer;
        uint256 fee;
    }

    /// @dev Token balances around a call.
    struct Balances {
        uint256 server;
        uint256 pool;
        uint256 client;
    }

    function _expected(IPaymentChannels.Channel memory c, uint256 cumulative) internal view returns (Expected memory e) {
        e.newPaid = cumulative < c.deposit ? cumulative : c.deposit;
        e.shouldWork = !c.closed && cumulative > c.paid && e.newPaid > c.paid;
        uint256 amount = e.shouldWork ? e.newPaid - c.paid : 0;
        e.fee = (amount * channels.feeBps()) / 10_000;
        e.toServer = amount - e.fee;
    }

    function _balances(IPaymentChannels.Channel memory c) internal view returns (Balances memory b) {
        b.server = token.balanceOf(c.server);
        b.pool = token.balanceOf(pool);
        b.client = token.balanceOf(c.client);
    }

    /// @dev Checks and books a successful redemption against the expectation.
    function _recordRedeem(IPaymentChannels.Channel memory c, bytes32 id, Expected memory e, Balances memory b)
        internal
    {
        if (!e.shouldWork) _flag("redemption succeeded when it should have reverted");
        uint256 toServer = token.balanceOf(c.server) - b.server;
        uint256 toPool = token.balanceOf(pool) - b.pool;
        if (toServer != e.toServer) _flag("redemption: server paid a wrong amount");
        if (toPool != e.fee) _flag("redemption: wrong fee");
        if (channels.channel(id).paid != e.newPaid) _flag("redemption: wrong paid");
        totalToServers += toServer;
        totalFees += toPool;
        ++redemptions;
    }

    /// @dev Redeems a voucher the client really signed, for a cumulative amount anywhere from 0 to
    ///      1.5 × the deposit (so below-paid, exact and over-deposit vouchers all occur).
    function redeem(uint256 channelSeed, uint256 cumulative) external useTime {
        (bool ok, bytes32 id, IPaymentChannels.Channel memory c) = _pick(channelSeed);
        if (!ok) return;
        cumulative = bound(cumulative, 0, c.deposit + c.deposit / 2);
        bytes memory sig = signDigest(_keyOf[c.client], channels.voucherDigest(id, cumulative));
        Expected memory e = _expected(c, cumulative);
        Balances memory b = _balances(c);
        vm.prank(c.server);
        try channels.redeem(id, cumulative, sig) {
            _recordRedeem(c, id, e, b);
        } catch {
            if (e.shouldWork) _flag("redeem of a valid voucher reverted");
        }
    }

    /// @dev The server's final voucher and close in one call; checked like redeem then closeByServer.
    function redeemAndClose(uint256 channelSeed, uint256 cumulative) external useTime {
        (bool ok, bytes32 id, IPaymentChannels.Channel memory c) = _pick(channelSeed);
        if (!ok) return;
        cumulative = bound(cumulative, 0, c.deposit + c.deposit / 2);
        bytes memory sig = signDigest(_keyOf[c.client], channels.voucherDigest(id, cumulative));
        Expected memory e = _expected(c, cumulative);
        Balances memory b = _balances(c);
        vm.prank(c.server);
        try channels.redeemAndClose(id, cumulative, sig) {
            _recordRedeem(c, id, e, b);
            if (!channels.channel(id).closed) _flag("redeemAndClose left the channel open");
            c.paid = e.newPaid;
            _recordClose(c, token.balanceOf(c.client) - b.client);
        } catch {
            if (e.shouldWork) _flag("redeemAndClose of a valid voucher reverted");
        }
    }

    /// @dev A voucher signed by the wrong key (another client) must never pay.
    function redeemForged(uint256 channelSeed, uint256 keySeed, uint256 cumulative) external useTime {
        (bool ok, bytes32 id, IPaymentChannels.Channel memory c) = _pick(channelSeed);
        if (!ok) return;
        uint256 key = _clientKeys[keySeed % _clientKeys.length];
        if (vm.addr(key) == c.client) key = _clientKeys[(keySeed + 1) % _clientKeys.length];
        cumulative = bound(cumulative, 1, c.deposit);
        bytes memory sig = signDigest(key, channels.voucherDigest(id, cumulative));
        vm.prank(c.server);
        try channels.redeem(id, cumulative, sig) {
            _flag("forged voucher paid");
        } catch {}
    }

    function startClose(uint256 channelSeed) external useTime {
        (bool ok, bytes32 id, IPaymentChannels.Channel memory c) = _pick(channelSeed);
        if (!ok) return;
        bool shouldWork = !c.closed && c.closeReadyAt == 0;
        vm.prank(c.client);
        try channels.startClose(id) {
            if (!shouldWork) _flag("startClose succeeded on a closed or closing channel");
            if (channels.channel(id).closeReadyAt != block.timestamp + closeTimeout) _flag("startClose: readyAt");
        } catch {
            if (shouldWork) _flag("startClose reverted on an open channel");
        }
    }

    function finishClose(uint256 channelSeed) external useTime {
        (bool ok, bytes32 id, IPaymentChannels.Channel memory c) = _pick(channelSeed);
        if (!ok) return;
        bool shouldWork = !c.closed && c.closeReadyAt != 0 && block.timestamp >= c.closeReadyAt;
        uint256 before = token.balanceOf(c.client);
        vm.prank(c.client);
        try channels.finishClose(id) {
            if (!shouldWork) _flag("finishClose succeeded before its time");
            _recordClose(c, token.balanceOf(c.client) - before);
        } catch {
            if (shouldWork) _flag("finishClose reverted after the timeout");
        }
    }

    function closeByServer(uint256 channelSeed) external useTime {
        (bool ok, bytes32 id, IPaymentChannels.Channel memory c) = _pick(channelSeed);
        if (!ok) return;
        uint256 before = token.balanceOf(c.client);
        vm.prank(c.server);
        try channels.closeByServer(id) {
            if (c.closed) _flag("closeByServer succeeded on a closed channel");
            _recordClose(c, token.balanceOf(c.client) - before);
        } catch {
            if (!c.closed) _flag("closeByServer reverted on a live channel");
        }
    }

    function _recordClose(IPaymentChannels.Channel memory c, uint256 refund) internal {
        if (refund != c.deposit - c.paid) _flag("close: refund is not deposit - paid");
        totalRefunds += refund;
        refundsTo[c.client] += refund;
        ++closes;
    }
}
