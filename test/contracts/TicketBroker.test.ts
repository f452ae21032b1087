import { expect } from "chai";
import { network } from "hardhat";
import { Wallet, ZeroAddress, ZeroHash, keccak256, toUtf8Bytes } from "ethers";
import {
  CERTAIN_WIN_PROB,
  TICKET_TYPES,
  isWinningTicket,
  recipientRandHash,
  signTicket,
  ticketDomain,
  ticketHash,
  type Ticket,
} from "../../protocol/tickets.js";
import { TicketBroker__factory } from "../../types/ethers-contracts/index.js";
import { PARAMS, registerServer, signPermit, worldFixture, type World } from "./fixtures.js";

const { ethers, networkHelpers } = await network.create();
const world = worldFixture(ethers);
const FEE_BPS = PARAMS.feeBps;
const UNLOCK = PARAMS.tickets.unlockPeriod;
const POOL = PARAMS.tickets.reservePoolSize;
const DEPOSIT = 1_000_000n;
const RESERVE = 800_000n;
const RAND = 0x5eed_1234n;
const SESSION = keccak256(toUtf8Bytes("session 1"));

const fee = (amount: bigint): bigint => (amount * FEE_BPS) / 10_000n;

/** Both servers registered (serving), the client funded with DEPOSIT and RESERVE. */
async function funded(): Promise<World & { broker: string }> {
  const w = await networkHelpers.loadFixture(world);
  await registerServer(w, w.server);
  await registerServer(w, w.server2);
  const broker = await w.ticketBroker.getAddress();
  await w.token.connect(w.client).approve(broker, DEPOSIT + RESERVE);
  await w.ticketBroker.connect(w.client).fund(DEPOSIT, RESERVE);
  return { ...w, broker };
}

async function ticketFor(w: World, over: Partial<Ticket> = {}): Promise<Ticket> {
  return {
    recipient: w.server.address,
    sender: w.client.address,
    faceValue: 1_000n,
    winProb: CERTAIN_WIN_PROB,
    senderNonce: 1n,
    recipientRandHash: recipientRandHash(RAND),
    expiration: BigInt(await networkHelpers.time.latest()) + 3600n,
    auxData: SESSION,
    ...over,
  };
}

async function sign(w: World, t: Ticket, signer = w.client, domain?: ReturnType<typeof ticketDomain>): Promise<string> {
  return signTicket(signer, domain ?? ticketDomain(w.chainId, await w.ticketBroker.getAddress()), t);
}

async function hashOf(w: World, t: Ticket): Promise<string> {
  return ticketHash(ticketDomain(w.chainId, await w.ticketBroker.getAddress()), t);
}

describe("TicketBroker", function () {
  describe("deployment and governance", function () {
    it("rejects zero addresses, a fee above the maximum, a zero unlock period and a zero reserve pool", async function () {
      const w = await networkHelpers.loadFixture(world);
      const f = new TicketBroker__factory(w.admin);
      const [tk, st, pool] = [await w.token.getAddress(), await w.staking.getAddress(), await w.rewards.getAddress()];
      await expect(f.deploy(ZeroAddress, tk, st, pool, 0, 1, 1)).to.be.revertedWithCustomError(w.ticketBroker, "TicketZeroAddress");
      await expect(f.deploy(w.admin.address, tk, st, ZeroAddress, 0, 1, 1)).to.be.revertedWithCustomError(w.ticketBroker, "TicketZeroAddress");
      await expect(f.deploy(w.admin.address, tk, st, pool, 2_001, 1, 1)).to.be.revertedWithCustomError(w.ticketBroker, "TicketFeeTooHigh").withArgs(2_001, 2_000);
      await expect(f.deploy(w.admin.address, tk, st, pool, 0, 0, 1)).to.be.revertedWithCustomError(w.ticketBroker, "TicketZeroUnlockPeriod");
      await expect(f.deploy(w.admin.address, tk, st, pool, 0, 1, 0)).to.be.revertedWithCustomError(w.ticketBroker, "TicketZeroReservePoolSize");
    });

    it("is deployed with the devnet parameters and lets only governance change them", async function () {
      const w = await networkHelpers.loadFixture(world);
      const b = w.ticketBroker;
      expect([await b.feeBps(), await b.unlockPeriod(), await b.reservePoolSize(), await b.rewardPool(), await b.trustRecorder()]).to.deep.equal([
        FEE_BPS,
        UNLOCK,
        POOL,
        await w.rewards.getAddress(),
        await w.trust.getAddress(),
      ]);
      await expect(b.connect(w.stranger).setFee(1))
        .to.be.revertedWithCustomError(b, "AccessControlUnauthorizedAccount")
        .withArgs(w.stranger.address, await b.GOVERNANCE_ROLE());
      await expect(b.setFee(7)).to.emit(b, "FeeSet").withArgs(7);
      await expect(b.setUnlockPeriod(99)).to.emit(b, "UnlockPeriodSet").withArgs(99);
      await expect(b.setReservePoolSize(3)).to.emit(b, "ReservePoolSizeSet").withArgs(3);
      await expect(b.setRewardPool(w.stranger.address)).to.emit(b, "RewardPoolSet").withArgs(w.stranger.address);
      await expect(b.setTrustRecorder(ZeroAddress)).to.emit(b, "TrustRecorderSet").withArgs(ZeroAddress);
      await expect(b.setUnlockPeriod(0)).to.be.revertedWithCustomError(b, "TicketZeroUnlockPeriod");
      await expect(b.setReservePoolSize(0)).to.be.revertedWithCustomError(b, "TicketZeroReservePoolSize");
      await expect(b.setRewardPool(ZeroAddress)).to.be.revertedWithCustomError(b, "TicketZeroAddress");
    });
  });

  describe("funding", function () {
    it("takes a deposit and a reserve in one call, starting a new reserve epoch", async function () {
      const w = await networkHelpers.loadFixture(world);
      const b = w.ticketBroker;
      await w.token.connect(w.client).approve(await b.getAddress(), 300n);
      await expect(b.connect(w.client).fund(100n, 200n))
        .to.emit(b, "DepositFunded")
        .withArgs(w.client.address, 100n, 100n)
        .and.to.emit(b, "ReserveFunded")
        .withArgs(w.client.address, 200n, 200n, 1);
      const s = await b.senderInfo(w.client.address);
      expect([s.deposit, s.reserve, s.withdrawableAt]).to.deep.equal([100n, 200n, 0n]);
      expect(await w.token.balanceOf(await b.getAddress())).to.equal(300n);
    });

    it("funds with a permit in one transaction", async function () {
      const w = await networkHelpers.loadFixture(world);
      const b = w.ticketBroker;
      const deadline = BigInt(await networkHelpers.time.latest()) + 600n;
      const sig = await signPermit(w, w.client, await b.getAddress(), 500n, deadline);
      await expect(b.connect(w.client).fundWithPermit(400n, 100n, deadline, sig.v, sig.r, sig.s))
        .to.emit(b, "DepositFunded")
        .withArgs(w.client.address, 400n, 400n);
      expect((await b.senderInfo(w.client.address)).reserve).to.equal(100n);
      expect(await w.token.allowance(w.client.address, await b.getAddress())).to.equal(0n);
    });

    it("rejects nothing to fund and balances beyond 96 bits", async function () {
      const w = await networkHelpers.loadFixture(world);
      const b = w.ticketBroker;
      await expect(b.connect(w.client).fund(0n, 0n)).to.be.revertedWithCustomError(b, "TicketZeroAmount");
      const max = (1n << 96n) - 1n;
      await w.token.mint(w.client.address, max + 1n);
      await w.token.connect(w.client).approve(await b.getAddress(), max + 1n);
      await expect(b.connect(w.client).fund(max + 1n, 0n)).to.be.revertedWithCustomError(b, "TicketAmountTooLarge").withArgs(max + 1n, max);
      await expect(b.connect(w.client).fund(0n, max + 1n)).to.be.revertedWithCustomError(b, "TicketAmountTooLarge").withArgs(max + 1n, max);
    });
  });

  describe("redeemWinningTicket", function () {
    it("pays a winning ticket's face value from the deposit, less the fee, and records paid work", async function () {
      const w = await funded();
      const t = await ticketFor(w);
      const hash = await hashOf(w, t);
      expect(await w.ticketBroker.ticketHash(t)).to.equal(hash);
      const before = await w.token.balanceOf(w.server.address);
      const poolBefore = await w.token.balanceOf(await w.rewards.getAddress());
      await expect(w.ticketBroker.connect(w.server).redeemWinningTicket(t, await sign(w, t), RAND))
        .to.emit(w.ticketBroker, "WinningTicketRedeemed")
        .withArgs(hash, w.client.address, w.server.address, 1_000n, 1_000n - fee(1_000n), fee(1_000n), 0n, SESSION);
      expect(await w.token.balanceOf(w.server.address)).to.equal(before + 1_000n - fee(1_000n));
      expect(await w.token.balanceOf(await w.rewards.getAddress())).to.equal(poolBefore + fee(1_000n));
      expect((await w.ticketBroker.senderInfo(w.client.address)).deposit).to.equal(DEPOSIT - 1_000n);
      expect(await w.ticketBroker.usedTickets(hash)).to.equal(true);
      expect((await w.trust.record(w.server.address)).paidWork).to.equal(1_000n);
    });

    it("refuses a replay of a redeemed ticket", async function () {
      const w = await funded();
      const t = await ticketFor(w);
      const sig = await sign(w, t);
      await w.ticketBroker.connect(w.server).redeemWinningTicket(t, sig, RAND);
      await expect(w.ticketBroker.connect(w.server).redeemWinningTicket(t, sig, RAND))
        .to.be.revertedWithCustomError(w.ticketBroker, "TicketAlreadyRedeemed")
        .withArgs(await hashOf(w, t));
    });

    it("refuses a caller that is not the recipient, and a recipient that is not serving", async function () {
      const w = await funded();
      const t = await ticketFor(w);
      await expect(w.ticketBroker.connect(w.server2).redeemWinningTicket(t, await sign(w, t), RAND))
        .to.be.revertedWithCustomError(w.ticketBroker, "TicketWrongRecipient")
        .withArgs(await hashOf(w, t), w.server.address, w.server2.address);
      const s = await ticketFor(w, { recipient: w.stranger.address });
      await expect(w.ticketBroker.connect(w.stranger).redeemWinningTicket(s, await sign(w, s), RAND))
        .to.be.revertedWithCustomError(w.ticketBroker, "TicketRecipientNotServing")
        .withArgs(w.stranger.address);
    });

    it("refuses an expired ticket", async function () {
      const w = await funded();
      const t = await ticketFor(w);
      const sig = await sign(w, t);
      await networkHelpers.time.setNextBlockTimestamp(t.expiration + 1n);
      await expect(w.ticketBroker.connect(w.server).redeemWinningTicket(t, sig, RAND))
        .to.be.revertedWithCustomError(w.ticketBroker, "TicketExpired")
        .withArgs(await hashOf(w, t), t.expiration, t.expiration + 1n);
    });

    it("refuses a signature by another key, or for another chain or contract", async function () {
      const w = await funded();
      const t = await ticketFor(w);
      const hash = await hashOf(w, t);
      const other = Wallet.createRandom();
      const cases: [string, string][] = [
        [await sign(w, t, w.stranger), w.stranger.address],
        [await other.signTypedData(ticketDomain(w.chainId, w.broker), { Ticket: TICKET_TYPES.Ticket! }, t), other.address],
      ];
      for (const domain of [ticketDomain(w.chainId + 1n, w.broker), ticketDomain(w.chainId, await w.channels.getAddress())]) {
        const sig = await sign(w, t, w.client, domain);
        cases.push([sig, ethers.recoverAddress(hash, sig)]);
      }
      for (const [sig, signer] of cases) {
        expect(signer).to.not.equal(w.client.address);
        await expect(w.ticketBroker.connect(w.server).redeemWinningTicket(t, sig, RAND))
          .to.be.revertedWithCustomError(w.ticketBroker, "TicketBadSigner")
          .withArgs(hash, signer, w.client.address);
      }
    });

    it("refuses a recipientRand that does not match the commitment", async function () {
      const w = await funded();
      const t = await ticketFor(w);
      await expect(w.ticketBroker.connect(w.server).redeemWinningTicket(t, await sign(w, t), RAND + 1n))
        .to.be.revertedWithCustomError(w.ticketBroker, "TicketBadRecipientRand")
        .withArgs(await hashOf(w, t), t.recipientRandHash);
    });

    it("refuses a zero face value", async function () {
      const w = await funded();
      const t = await ticketFor(w, { faceValue: 0n });
      const sig = await w.client.signTypedData(ticketDomain(w.chainId, w.broker), TICKET_TYPES, t);
      const hash = ethers.TypedDataEncoder.hash(ticketDomain(w.chainId, w.broker), TICKET_TYPES, t);
      await expect(w.ticketBroker.connect(w.server).redeemWinningTicket(t, sig, RAND))
        .to.be.revertedWithCustomError(w.ticketBroker, "TicketZeroFaceValue")
        .withArgs(hash);
    });

    it("decides winners as the TypeScript win check does, and refuses losers", async function () {
      const w = await funded();
      const half = 1n << 255n; // p = 1/2
      const winners: Ticket[] = [];
      const losers: Ticket[] = [];
      for (let nonce = 1n; winners.length === 0 || losers.length === 0; nonce++) {
        const t = await ticketFor(w, { winProb: half, senderNonce: nonce });
        const hash = await hashOf(w, t);
        const wins = isWinningTicket(hash, RAND, half);
        expect(await w.ticketBroker.isWinningTicket(hash, RAND, half)).to.equal(wins);
        (wins ? winners : losers).push(t);
      }
      const [win, lose] = [winners[0]!, losers[0]!];
      await expect(w.ticketBroker.connect(w.server).redeemWinningTicket(lose, await sign(w, lose), RAND))
        .to.be.revertedWithCustomError(w.ticketBroker, "TicketNotWinning")
        .withArgs(await hashOf(w, lose));
      await expect(w.ticketBroker.connect(w.server).redeemWinningTicket(win, await sign(w, win), RAND)).to.emit(w.ticketBroker, "WinningTicketRedeemed");
      expect(await w.ticketBroker.isWinningTicket(ZeroHash, 0n, CERTAIN_WIN_PROB)).to.equal(true);
      expect(await w.ticketBroker.isWinningTicket(ZeroHash, 0n, 0n)).to.equal(false);
    });

    it("refuses a winner when the client has nothing left for this server", async function () {
      const w = await networkHelpers.loadFixture(world);
      await registerServer(w, w.server);
      const t = await ticketFor(w);
      await expect(w.ticketBroker.connect(w.server).redeemWinningTicket(t, await sign(w, t), RAND))
        .to.be.revertedWithCustomError(w.ticketBroker, "TicketSenderUnfunded")
        .withArgs(await hashOf(w, t), w.client.address, w.server.address);
    });
  });

  describe("reserve", function () {
    it("pays the shortfall from the frozen reserve, at most reserve / reservePoolSize per server", async function () {
      const w = await networkHelpers.loadFixture(world);
      await registerServer(w, w.server);
      await registerServer(w, w.server2);
      const b = w.ticketBroker;
      await w.token.connect(w.client).approve(await b.getAddress(), 100n + RESERVE);
      await b.connect(w.client).fund(100n, RESERVE);
      const share = RESERVE / POOL;
      expect(await b.reserveAvailable(w.client.address, w.server.address)).to.equal(share);
      // server: 100 from the deposit, the rest of a 2×share ticket from its share only
      const t1 = await ticketFor(w, { faceValue: 2n * share, senderNonce: 1n });
      await expect(b.connect(w.server).redeemWinningTicket(t1, await sign(w, t1), RAND))
        .to.emit(b, "ReserveFrozen")
        .withArgs(w.client.address, 1, RESERVE, share)
        .and.to.emit(b, "WinningTicketRedeemed")
        .withArgs(await hashOf(w, t1), w.client.address, w.server.address, 2n * share, 100n + share - fee(100n + share), fee(100n + share), share, SESSION);
      expect(await b.reserveAvailable(w.client.address, w.server.address)).to.equal(0n);
      const t2 = await ticketFor(w, { senderNonce: 2n });
      await expect(b.connect(w.server).redeemWinningTicket(t2, await sign(w, t2), RAND))
        .to.be.revertedWithCustomError(b, "TicketSenderUnfunded")
        .withArgs(await hashOf(w, t2), w.client.address, w.server.address);
      // server2 still has its whole share of the frozen reserve, not what server left over
      expect(await b.reserveAvailable(w.client.address, w.server2.address)).to.equal(share);
      const t3 = await ticketFor(w, { recipient: w.server2.address, faceValue: 3n * share, senderNonce: 3n });
      await expect(b.connect(w.server2).redeemWinningTicket(t3, await sign(w, t3), RAND))
        .to.emit(b, "WinningTicketRedeemed")
        .withArgs(await hashOf(w, t3), w.client.address, w.server2.address, 3n * share, share - fee(share), fee(share), share, SESSION);
      const s = await b.senderInfo(w.client.address);
      expect([s.deposit, s.reserve]).to.deep.equal([0n, RESERVE - 2n * share]);
      expect((await b.reserveInfo(w.client.address)).frozen).to.equal(RESERVE);
    });

    it("starts a new split when the reserve is funded again", async function () {
      const w = await networkHelpers.loadFixture(world);
      await registerServer(w, w.server);
      const b = w.ticketBroker;
      await w.token.connect(w.client).approve(await b.getAddress(), 2n * RESERVE);
      await b.connect(w.client).fund(0n, RESERVE);
      const t1 = await ticketFor(w, { faceValue: RESERVE });
      await b.connect(w.server).redeemWinningTicket(t1, await sign(w, t1), RAND);
      await expect(b.connect(w.client).fund(0n, RESERVE))
        .to.emit(b, "ReserveFunded")
        .withArgs(w.client.address, RESERVE, 2n * RESERVE - RESERVE / POOL, 2);
      expect(await b.reserveAvailable(w.client.address, w.server.address)).to.equal((2n * RESERVE - RESERVE / POOL) / POOL);
    });
  });

  describe("unlock and withdraw", function () {
    it("keeps tickets redeemable during the unlock, so a client cannot front-run a redemption", async function () {
      const w = await funded();
      const b = w.ticketBroker;
      const t = await ticketFor(w, { expiration: BigInt(await networkHelpers.time.latest()) + 10n * UNLOCK });
      const sig = await sign(w, t);
      await b.connect(w.client).unlock();
      const readyAt = (await b.senderInfo(w.client.address)).withdrawableAt;
      expect(readyAt).to.equal(BigInt(await networkHelpers.time.latest()) + UNLOCK);
      await expect(b.connect(w.client).withdraw())
        .to.be.revertedWithCustomError(b, "TicketUnlockNotReady")
        .withArgs(w.client.address, readyAt, readyAt - UNLOCK + 1n);
      await b.connect(w.server).redeemWinningTicket(t, sig, RAND);
      await networkHelpers.time.increaseTo(readyAt);
      const before = await w.token.balanceOf(w.client.address);
      await expect(b.connect(w.client).withdraw())
        .to.emit(b, "Withdrawn")
        .withArgs(w.client.address, DEPOSIT - 1_000n, RESERVE);
      expect(await w.token.balanceOf(w.client.address)).to.equal(before + DEPOSIT - 1_000n + RESERVE);
      const late = await ticketFor(w, { senderNonce: 2n, expiration: t.expiration });
      await expect(b.connect(w.server).redeemWinningTicket(late, await sign(w, late), RAND))
        .to.be.revertedWithCustomError(b, "TicketSenderUnfunded")
        .withArgs(await hashOf(w, late), w.client.address, w.server.address);
    });

    it("refuses a second unlock, a cancel or withdraw without one, and an unlock with nothing deposited", async function () {
      const w = await funded();
      const b = w.ticketBroker;
      await expect(b.connect(w.client).cancelUnlock()).to.be.revertedWithCustomError(b, "TicketNotUnlocking").withArgs(w.client.address);
      await expect(b.connect(w.client).withdraw()).to.be.revertedWithCustomError(b, "TicketNotUnlocking").withArgs(w.client.address);
      await expect(b.connect(w.stranger).unlock()).to.be.revertedWithCustomError(b, "TicketNothingToWithdraw").withArgs(w.stranger.address);
      await expect(b.connect(w.client).unlock()).to.emit(b, "Unlocked");
      const readyAt = (await b.senderInfo(w.client.address)).withdrawableAt;
      await expect(b.connect(w.client).unlock()).to.be.revertedWithCustomError(b, "TicketUnlockPending").withArgs(w.client.address, readyAt);
      await expect(b.connect(w.client).cancelUnlock()).to.emit(b, "UnlockCancelled").withArgs(w.client.address);
      expect((await b.senderInfo(w.client.address)).withdrawableAt).to.equal(0n);
    });
  });
});
