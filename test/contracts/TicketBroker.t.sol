// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TicketBroker} from "../../contracts/TicketBroker.sol";
import {ITicketBroker} from "../../contracts/interfaces/ITicketBroker.sol";
import {EFedFixture} from "./utils/EFedFixture.sol";

/// @title Fuzz tests of TicketBroker: what winners are paid never exceeds what the client funded,
///        the deposit pays first, and no server draws more than its share of a frozen reserve.
contract TicketBrokerFuzzTest is EFedFixture {
    address internal constant POOL = address(0xF00D);
    uint16 internal constant FEE_BPS = 250;
    uint32 internal constant RESERVE_POOL = 2;
    uint256 internal constant RAND = 0x5eed;
    uint256 internal constant MAX_FUNDS = 1e27;

    TicketBroker internal broker;
    address[3] internal servers = [address(0x5E4E41), address(0x5E4E42), address(0x5E4E43)];

    function setUp() public {
        _deployCore();
        for (uint256 i = 0; i < servers.length; i++) _makeServer(servers[i], 0, NUM_LAYERS);
        broker = new TicketBroker(address(this), token, staking, POOL, FEE_BPS, 1 days, RESERVE_POOL);
        vm.warp(1_700_000_000);
    }

    function _ticket(address sender, address recipient, uint256 faceValue, uint256 nonce) internal view returns (ITicketBroker.Ticket memory) {
        return ITicketBroker.Ticket({
            recipient: recipient,
            sender: sender,
            faceValue: faceValue,
            winProb: type(uint256).max,
            senderNonce: nonce,
            recipientRandHash: keccak256(abi.encode(RAND)),
            expiration: uint64(block.timestamp + 1 days),
            auxData: bytes32(0)
        });
    }

    /// @dev Funds `deposit` and `reserve`, then redeems certain tickets of fuzzed face values for the
    ///      three servers in turn, checking every payout against the funds and the reserve split.
    function testFuzz_payoutsStayWithinFundsAndShares(uint256 pkSeed, uint256 deposit, uint256 reserve, uint256[6] memory faces) public {
        uint256 pk = boundPrivateKey(pkSeed);
        address client = vm.addr(pk);
        vm.assume(client != POOL && client != address(this) && client != address(broker));
        for (uint256 i = 0; i < servers.length; i++) vm.assume(client != servers[i]);
        deposit = bound(deposit, 0, MAX_FUNDS);
        reserve = bound(reserve, 1, MAX_FUNDS);
        token.mint(client, deposit + reserve);
        vm.startPrank(client);
        token.approve(address(broker), deposit + reserve);
        broker.fund(deposit, reserve);
        vm.stopPrank();

        uint256 paidTotal;
        uint256[3] memory fromReserve;
        for (uint256 i = 0; i < faces.length; i++) {
            (uint256 paid, uint256 drawn) = _redeemAndCheck(pk, client, servers[i % servers.length], bound(faces[i], 1, MAX_FUNDS), i + 1);
            fromReserve[i % servers.length] += drawn;
            paidTotal += paid;
        }
        assertLe(paidTotal, deposit + reserve, "paid out never exceeds funded");
        assertEq(token.balanceOf(address(broker)), deposit + reserve - paidTotal, "the broker holds exactly what is left");
        uint256 frozen = broker.reserveInfo(client).frozen;
        for (uint256 s = 0; s < servers.length; s++) assertLe(fromReserve[s], frozen / RESERVE_POOL, "no server draws more than its share");
    }

    /// @dev Redeems one certain ticket for `server` and checks the payout; (0, 0) when refused as unfunded.
    function _redeemAndCheck(uint256 pk, address client, address server, uint256 face, uint256 nonce) internal returns (uint256 paid, uint256 drawn) {
        ITicketBroker.Ticket memory t = _ticket(client, server, face, nonce);
        bytes memory sig = signDigest(pk, broker.ticketHash(t));
        ITicketBroker.SenderInfo memory before = broker.senderInfo(client);
        uint256 balances = token.balanceOf(server) + token.balanceOf(POOL);
        vm.prank(server);
        try broker.redeemWinningTicket(t, sig, RAND) {
            ITicketBroker.SenderInfo memory afterwards = broker.senderInfo(client);
            paid = token.balanceOf(server) + token.balanceOf(POOL) - balances;
            drawn = before.reserve - afterwards.reserve;
            assertEq(paid, (before.deposit - afterwards.deposit) + drawn, "payout = deposit taken + reserve drawn");
            assertLe(paid, face, "never more than the face value");
            if (face <= before.deposit) assertEq(paid, face, "a covered ticket is paid in full from the deposit");
            if (drawn != 0) assertEq(afterwards.deposit, 0, "the reserve pays only once the deposit is empty");
        } catch (bytes memory err) {
            assertEq(bytes4(err), ITicketBroker.TicketSenderUnfunded.selector, "the only refusal is an empty deposit and share");
        }
    }
}
