// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {PaymentChannels} from "../../contracts/PaymentChannels.sol";
import {IPaymentChannels} from "../../contracts/interfaces/IPaymentChannels.sol";
import {EFedFixture} from "./utils/EFedFixture.sol";
import {ChannelsHandler} from "./utils/ChannelsHandler.sol";

/// @title Invariants of PaymentChannels under random opens, top-ups, vouchers, forgeries, closes
///        (client, server, redeemAndClose) and fee changes
contract PaymentChannelsInvariantTest is EFedFixture {
    address internal constant POOL = address(0xF00D);

    PaymentChannels internal channels;
    ChannelsHandler internal handler;

    function setUp() public {
        _deployCore();
        vm.warp(1_700_000_000);
        address[] memory servers = new address[](2);
        servers[0] = address(0x5E4E41);
        servers[1] = address(0x5E4E42);
        _makeServer(servers[0], 0, NUM_LAYERS);
        _makeServer(servers[1], 0, NUM_LAYERS / 2);
        vm.warp(block.timestamp + PROBATION); // both servers past probation: eligible for channels
        channels = new PaymentChannels(address(this), token, staking, POOL, 250, 1 days);

        uint256[] memory keys = new uint256[](3);
        keys[0] = 0xA11CE;
        keys[1] = 0xB0B;
        keys[2] = 0xC4A401;
        handler = new ChannelsHandler(channels, token, POOL, keys, servers);
        channels.grantRole(channels.GOVERNANCE_ROLE(), address(handler));
        token.mint(address(handler), 1e40);

        targetContract(address(handler));
        bytes4[] memory selectors = new bytes4[](10);
        selectors[0] = ChannelsHandler.warp.selector;
        selectors[1] = ChannelsHandler.setFee.selector;
        selectors[2] = ChannelsHandler.open.selector;
        selectors[3] = ChannelsHandler.topUp.selector;
        selectors[4] = ChannelsHandler.redeem.selector;
        selectors[5] = ChannelsHandler.redeemForged.selector;
        selectors[6] = ChannelsHandler.startClose.selector;
        selectors[7] = ChannelsHandler.finishClose.selector;
        selectors[8] = ChannelsHandler.closeByServer.selector;
        selectors[9] = ChannelsHandler.redeemAndClose.selector;
        targetSelector(address(handler), selectors);
    }

    /// @dev (2) paid <= deposit for every channel; the contract holds exactly Σ (deposit - paid) over
    ///      channels not closed; Σ paid = server payouts + fees; payouts + fees + refunds never exceed
    ///      deposits, and the difference is exactly the contract's balance.
    function invariant_ChannelsSolvent() public view {
        bytes32[] memory ids = handler.channelIds();
        uint256 held = 0;
        uint256 paidTotal = 0;
        for (uint256 i = 0; i < ids.length; ++i) {
            IPaymentChannels.Channel memory c = channels.channel(ids[i]);
            assertLe(c.paid, c.deposit, "paid exceeds deposit");
            paidTotal += c.paid;
            if (!c.closed) held += c.deposit - c.paid;
        }
        uint256 balance = token.balanceOf(address(channels));
        assertEq(balance, held, "channels balance vs sum of open (deposit - paid)");
        assertEq(paidTotal, handler.totalToServers() + handler.totalFees(), "sum of paid vs payouts + fees");

        uint256 out = handler.totalToServers() + handler.totalFees() + handler.totalRefunds();
        assertLe(out, handler.totalDeposited(), "paid out + fees + refunds exceeds deposits");
        assertEq(handler.totalDeposited() - out, balance, "deposits - outflows vs balance");
        assertEq(token.balanceOf(POOL), handler.totalFees(), "pool holds exactly the fees");
    }

    /// @dev Every call's outcome matched the spec (exact payouts and fees, refunds, revert conditions),
    ///      clients' wallets hold exactly their refunds and forged vouchers never paid.
    function invariant_ActionsMatchSpec() public view {
        assertEq(handler.mismatch(), "", "spec mismatch");
        address[] memory clients = handler.clients();
        for (uint256 i = 0; i < clients.length; ++i) {
            assertEq(token.balanceOf(clients[i]), handler.refundsTo(clients[i]), "client wallet vs refunds");
        }
        address[] memory servers = handler.servers();
        uint256 serverTotal = 0;
        for (uint256 i = 0; i < servers.length; ++i) serverTotal += token.balanceOf(servers[i]);
        assertEq(serverTotal, handler.totalToServers(), "servers' wallets vs payouts");
    }
}
