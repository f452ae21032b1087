import { expect } from "chai";
import { network } from "hardhat";
import { Signature, ZeroAddress, concat, toBeHex } from "ethers";
import { voucherDomain } from "../../protocol/eip712.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { recoverVoucherSigner, signVoucher, voucherDigest } from "../../protocol/voucher.js";
import { PARAMS, registerServer, signPermit, worldFixture, type World } from "./fixtures.js";

const { ethers, networkHelpers } = await network.create();
const world = worldFixture(ethers);
const FEE_BPS = PARAMS.feeBps;
const CLOSE_TIMEOUT = PARAMS.closeTimeoutSeconds;
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const DEPOSIT = 1_000_000n;

function fee(amount: bigint): bigint {
  return (amount * FEE_BPS) / 10_000n;
}

/** Registers `who` as a server and lets its probation pass, so clients may open channels to it. */
async function registerEligible(w: World, who: World["server"]): Promise<void> {
  await registerServer(w, who);
  await networkHelpers.time.increase(PARAMS.timing.probationPeriod);
}

/** A world with a registered, eligible server and an open channel client → server holding DEPOSIT. */
async function openWorld(): Promise<World & { id: string }> {
  const w = await networkHelpers.loadFixture(world);
  await registerEligible(w, w.server);
  const id = await w.channels.nextChannelId(w.client.address, w.server.address);
  await w.token.connect(w.client).approve(await w.channels.getAddress(), DEPOSIT);
  await w.channels.connect(w.client).open(w.server.address, DEPOSIT);
  return { ...w, id };
}

async function voucher(w: World, id: string, amount: bigint, signer = w.client): Promise<string> {
  return signVoucher(signer, voucherDomain(w.chainId, await w.channels.getAddress()), { channelId: id, cumulativeAmount: amount });
}

describe("PaymentChannels", function () {
  describe("open", function () {
    it("opens a channel with a deposit and emits ChannelOpened", async function () {
      const w = await networkHelpers.loadFixture(world);
      await registerEligible(w, w.server);
      const id = await w.channels.nextChannelId(w.client.address, w.server.address);
      expect(id).to.equal(
        ethers.keccak256(ethers.AbiCoder.defaultAbiCoder().encode(["address", "address", "uint256"], [w.client.address, w.server.address, 0])),
      );
      await w.token.connect(w.client).approve(await w.channels.getAddress(), 500n);
      await expect(w.channels.connect(w.client).open(w.server.address, 500n))
        .to.emit(w.channels, "ChannelOpened")
        .withArgs(id, w.client.address, w.server.address, 500n);
      const c = await w.channels.channel(id);
      expect([c.client, c.server, c.deposit, c.paid, c.closeReadyAt, c.closed]).to.deep.equal([
        w.client.address,
        w.server.address,
        500n,
        0n,
        0n,
        false,
      ]);
      expect(await w.channels.nextChannelId(w.client.address, w.server.address)).to.not.equal(id);
    });

    it("opens with a permit in one transaction", async function () {
      const w = await networkHelpers.loadFixture(world);
      await registerEligible(w, w.server);
      const deadline = BigInt(await networkHelpers.time.latest()) + 600n;
      const sig = await signPermit(w, w.client, await w.channels.getAddress(), 700n, deadline);
      const id = await w.channels.nextChannelId(w.client.address, w.server.address);
      await expect(w.channels.connect(w.client).openWithPermit(w.server.address, 700n, deadline, sig.v, sig.r, sig.s))
        .to.emit(w.channels, "ChannelOpened")
        .withArgs(id, w.client.address, w.server.address, 700n);
      expect(await w.token.balanceOf(await w.channels.getAddress())).to.equal(700n);
    });

    it("regression: refuses a server in probation, and one whose trust fell below θ", async function () {
      const w = await networkHelpers.loadFixture(world);
      await registerServer(w, w.server);
      await w.token.connect(w.client).approve(await w.channels.getAddress(), 2n);
      await expect(w.channels.connect(w.client).open(w.server.address, 1))
        .to.be.revertedWithCustomError(w.channels, "ChannelServerNotActive")
        .withArgs(w.server.address);
      await networkHelpers.time.increase(PARAMS.timing.probationPeriod);
      await w.channels.connect(w.client).open(w.server.address, 1);
      await w.trust.connect(w.slasher).recordAudit(w.server.address, false);
      await expect(w.channels.connect(w.client).open(w.server.address, 1))
        .to.be.revertedWithCustomError(w.channels, "ChannelServerNotActive")
        .withArgs(w.server.address);
    });

    it("rejects a zero deposit and inactive servers", async function () {
      const w = await networkHelpers.loadFixture(world);
      await registerEligible(w, w.server);
      await expect(w.channels.connect(w.client).open(w.server.address, 0)).to.be.revertedWithCustomError(w.channels, "ChannelZeroAmount");
      await expect(w.channels.connect(w.client).open(w.stranger.address, 1))
        .to.be.revertedWithCustomError(w.channels, "ChannelServerNotActive")
        .withArgs(w.stranger.address);
    });

    it("refuses a server whose model variant was retired; its open channels still settle", async function () {
      const w = await openWorld();
      await w.registry.retireVariant(await w.staking.server(w.server.address).then((s) => s.variant));
      expect(await w.staking.isActiveServer(w.server.address)).to.equal(true);
      expect(await w.staking.isServing(w.server.address)).to.equal(false);
      await w.token.connect(w.client).approve(await w.channels.getAddress(), 1n);
      await expect(w.channels.connect(w.client).open(w.server.address, 1n))
        .to.be.revertedWithCustomError(w.channels, "ChannelServerNotActive")
        .withArgs(w.server.address);
      await expect(w.channels.connect(w.server).redeemAndClose(w.id, 10n, await voucher(w, w.id, 10n))).to.emit(w.channels, "ChannelClosed");
    });

    it("reverts on unknown channels", async function () {
      const w = await networkHelpers.loadFixture(world);
      const id = ethers.id("nope");
      await expect(w.channels.channel(id)).to.be.revertedWithCustomError(w.channels, "ChannelUnknown").withArgs(id);
      await expect(w.channels.connect(w.client).topUp(id, 1)).to.be.revertedWithCustomError(w.channels, "ChannelUnknown").withArgs(id);
    });
  });

  describe("redeem", function () {
    it("pays the increase, less the protocol fee to the reward pool", async function () {
      const w = await openWorld();
      const serverBefore = await w.token.balanceOf(w.server.address);
      await expect(w.channels.connect(w.server).redeem(w.id, 1000n, await voucher(w, w.id, 1000n)))
        .to.emit(w.channels, "VoucherRedeemed")
        .withArgs(w.id, 1000n, 1000n - fee(1000n), fee(1000n));
      await expect(w.channels.connect(w.server).redeem(w.id, 3500n, await voucher(w, w.id, 3500n)))
        .to.emit(w.channels, "VoucherRedeemed")
        .withArgs(w.id, 3500n, 2500n - fee(2500n), fee(2500n));
      expect(await w.token.balanceOf(w.server.address)).to.equal(serverBefore + 3500n - fee(1000n) - fee(2500n));
      // every redemption is the server's paid work in the trust contract, the only non-audit credit
      expect((await w.trust.record(w.server.address)).paidWork).to.equal(3500n);
      expect(await w.token.balanceOf(await w.rewards.getAddress())).to.equal(fee(1000n) + fee(2500n));
      expect(await w.rewards.unallocated()).to.equal(fee(1000n) + fee(2500n));
      expect((await w.channels.channel(w.id)).paid).to.equal(3500n);
    });

    it("never pays more than the deposit, and pays the rest after a top-up", async function () {
      const w = await openWorld();
      const sig = await voucher(w, w.id, DEPOSIT + 400n);
      await expect(w.channels.connect(w.server).redeem(w.id, DEPOSIT + 400n, sig))
        .to.emit(w.channels, "VoucherRedeemed")
        .withArgs(w.id, DEPOSIT + 400n, DEPOSIT - fee(DEPOSIT), fee(DEPOSIT));
      await expect(w.channels.connect(w.server).redeem(w.id, DEPOSIT + 400n, sig))
        .to.be.revertedWithCustomError(w.channels, "ChannelDepositExhausted")
        .withArgs(w.id, DEPOSIT);
      await w.token.connect(w.client).approve(await w.channels.getAddress(), 1000n);
      await expect(w.channels.connect(w.client).topUp(w.id, 1000n))
        .to.emit(w.channels, "ChannelToppedUp")
        .withArgs(w.id, 1000n, DEPOSIT + 1000n);
      await expect(w.channels.connect(w.server).redeem(w.id, DEPOSIT + 400n, sig))
        .to.emit(w.channels, "VoucherRedeemed")
        .withArgs(w.id, DEPOSIT + 400n, 400n - fee(400n), fee(400n));
    });

    it("rejects a replayed or lower cumulative voucher", async function () {
      const w = await openWorld();
      const sig = await voucher(w, w.id, 5000n);
      await w.channels.connect(w.server).redeem(w.id, 5000n, sig);
      await expect(w.channels.connect(w.server).redeem(w.id, 5000n, sig))
        .to.be.revertedWithCustomError(w.channels, "ChannelVoucherNotIncreasing")
        .withArgs(w.id, 5000n, 5000n);
      await expect(w.channels.connect(w.server).redeem(w.id, 4000n, await voucher(w, w.id, 4000n)))
        .to.be.revertedWithCustomError(w.channels, "ChannelVoucherNotIncreasing")
        .withArgs(w.id, 4000n, 5000n);
    });

    it("rejects a voucher signed by someone else than the client", async function () {
      const w = await openWorld();
      await expect(w.channels.connect(w.server).redeem(w.id, 10n, await voucher(w, w.id, 10n, w.stranger)))
        .to.be.revertedWithCustomError(w.channels, "ChannelBadVoucherSigner")
        .withArgs(w.id, w.stranger.address, w.client.address);
      // the server signing its own voucher is no better
      await expect(w.channels.connect(w.server).redeem(w.id, 10n, await voucher(w, w.id, 10n, w.server)))
        .to.be.revertedWithCustomError(w.channels, "ChannelBadVoucherSigner")
        .withArgs(w.id, w.server.address, w.client.address);
    });

    it("rejects vouchers for another chain id, another contract or another channel", async function () {
      const w = await openWorld();
      const channels = await w.channels.getAddress();
      const v = { channelId: w.id, cumulativeAmount: 10n };
      const cases = [
        await signVoucher(w.client, voucherDomain(w.chainId + 1n, channels), v),
        await signVoucher(w.client, voucherDomain(w.chainId, await w.commitments.getAddress()), v),
        await signVoucher(w.client, voucherDomain(w.chainId, channels), { channelId: ethers.id("other"), cumulativeAmount: 10n }),
      ];
      for (const sig of cases) {
        const recovered = recoverVoucherSigner(voucherDomain(w.chainId, channels), v, sig);
        expect(recovered).to.not.equal(w.client.address);
        await expect(w.channels.connect(w.server).redeem(w.id, 10n, sig))
          .to.be.revertedWithCustomError(w.channels, "ChannelBadVoucherSigner")
          .withArgs(w.id, recovered, w.client.address);
      }
    });

    it("rejects a malleable (high-s) signature and a malformed one", async function () {
      const w = await openWorld();
      const sig = Signature.from(await voucher(w, w.id, 10n));
      const highS = toBeHex(SECP256K1_N - BigInt(sig.s), 32);
      const flipped = concat([sig.r, highS, toBeHex(sig.v === 27 ? 28 : 27, 1)]);
      await expect(w.channels.connect(w.server).redeem(w.id, 10n, flipped))
        .to.be.revertedWithCustomError(w.channels, "ECDSAInvalidSignatureS")
        .withArgs(highS);
      await expect(w.channels.connect(w.server).redeem(w.id, 10n, "0x1234"))
        .to.be.revertedWithCustomError(w.channels, "ECDSAInvalidSignatureLength")
        .withArgs(2);
    });

    it("only the channel's server redeems", async function () {
      const w = await openWorld();
      await expect(w.channels.connect(w.client).redeem(w.id, 10n, await voucher(w, w.id, 10n)))
        .to.be.revertedWithCustomError(w.channels, "ChannelUnauthorized")
        .withArgs(w.id, w.client.address, w.server.address);
    });

    it("the TypeScript digest is the contract's digest", async function () {
      const w = await openWorld();
      const domain = voucherDomain(w.chainId, await w.channels.getAddress());
      for (const amount of [1n, 12345n, (1n << 255n) + 3n]) {
        expect(voucherDigest(domain, { channelId: w.id, cumulativeAmount: amount })).to.equal(await w.channels.voucherDigest(w.id, amount));
      }
      expect(() => voucherDigest(domain, { channelId: w.id, cumulativeAmount: 0n })).to.throw(
        InvalidArgumentError,
        "voucher.cumulativeAmount 0 must be in (0, 2^256)",
      );
    });
  });

  describe("closing", function () {
    it("the client takes back the rest after the timeout, unless the server redeems first", async function () {
      const w = await openWorld();
      const start = BigInt(await networkHelpers.time.latest()) + 1n;
      await networkHelpers.time.setNextBlockTimestamp(start);
      await expect(w.channels.connect(w.client).startClose(w.id))
        .to.emit(w.channels, "CloseStarted")
        .withArgs(w.id, start + CLOSE_TIMEOUT);
      await expect(w.channels.connect(w.client).startClose(w.id))
        .to.be.revertedWithCustomError(w.channels, "ChannelClosing")
        .withArgs(w.id, start + CLOSE_TIMEOUT);
      await w.token.connect(w.client).approve(await w.channels.getAddress(), 1n);
      await expect(w.channels.connect(w.client).topUp(w.id, 1n))
        .to.be.revertedWithCustomError(w.channels, "ChannelClosing")
        .withArgs(w.id, start + CLOSE_TIMEOUT);
      // the server may still redeem while the close is pending
      await w.channels.connect(w.server).redeem(w.id, 3000n, await voucher(w, w.id, 3000n));
      await networkHelpers.time.setNextBlockTimestamp(start + CLOSE_TIMEOUT - 1n);
      await expect(w.channels.connect(w.client).finishClose(w.id))
        .to.be.revertedWithCustomError(w.channels, "ChannelCloseNotReady")
        .withArgs(w.id, start + CLOSE_TIMEOUT, start + CLOSE_TIMEOUT - 1n);
      await networkHelpers.time.setNextBlockTimestamp(start + CLOSE_TIMEOUT);
      const before = await w.token.balanceOf(w.client.address);
      await expect(w.channels.connect(w.client).finishClose(w.id))
        .to.emit(w.channels, "ChannelClosed")
        .withArgs(w.id, DEPOSIT - 3000n);
      expect(await w.token.balanceOf(w.client.address)).to.equal(before + DEPOSIT - 3000n);
      expect(await w.token.balanceOf(await w.channels.getAddress())).to.equal(0n);
    });

    it("a voucher presented after the close finished is rejected (expired close)", async function () {
      const w = await openWorld();
      const sig = await voucher(w, w.id, 10n);
      await w.channels.connect(w.client).startClose(w.id);
      await networkHelpers.time.increase(CLOSE_TIMEOUT);
      await w.channels.connect(w.client).finishClose(w.id);
      await expect(w.channels.connect(w.server).redeem(w.id, 10n, sig))
        .to.be.revertedWithCustomError(w.channels, "ChannelIsClosed")
        .withArgs(w.id);
      await expect(w.channels.connect(w.client).finishClose(w.id))
        .to.be.revertedWithCustomError(w.channels, "ChannelIsClosed")
        .withArgs(w.id);
      expect((await w.channels.channel(w.id)).closed).to.equal(true);
    });

    it("finishing requires a started close, and only the client closes", async function () {
      const w = await openWorld();
      await expect(w.channels.connect(w.client).finishClose(w.id))
        .to.be.revertedWithCustomError(w.channels, "ChannelNotClosing")
        .withArgs(w.id);
      for (const call of [
        w.channels.connect(w.server).startClose(w.id),
        w.channels.connect(w.server).finishClose(w.id),
        w.channels.connect(w.server).topUp(w.id, 1n),
      ]) {
        await expect(call).to.be.revertedWithCustomError(w.channels, "ChannelUnauthorized").withArgs(w.id, w.server.address, w.client.address);
      }
      await expect(w.channels.connect(w.client).topUp(w.id, 0n)).to.be.revertedWithCustomError(w.channels, "ChannelZeroAmount");
    });

    it("the server can release the channel at once", async function () {
      const w = await openWorld();
      await w.channels.connect(w.server).redeem(w.id, 10n, await voucher(w, w.id, 10n));
      await expect(w.channels.connect(w.client).closeByServer(w.id))
        .to.be.revertedWithCustomError(w.channels, "ChannelUnauthorized")
        .withArgs(w.id, w.client.address, w.server.address);
      await expect(w.channels.connect(w.server).closeByServer(w.id)).to.emit(w.channels, "ChannelClosed").withArgs(w.id, DEPOSIT - 10n);
    });

    it("the server redeems its final voucher and closes in one transaction", async function () {
      const w = await openWorld();
      const serverBefore = await w.token.balanceOf(w.server.address);
      const clientBefore = await w.token.balanceOf(w.client.address);
      const tx = w.channels.connect(w.server).redeemAndClose(w.id, 4000n, await voucher(w, w.id, 4000n));
      await expect(tx).to.emit(w.channels, "VoucherRedeemed").withArgs(w.id, 4000n, 4000n - fee(4000n), fee(4000n));
      await expect(tx).to.emit(w.channels, "ChannelClosed").withArgs(w.id, DEPOSIT - 4000n);
      expect(await w.token.balanceOf(w.server.address)).to.equal(serverBefore + 4000n - fee(4000n));
      expect(await w.token.balanceOf(w.client.address)).to.equal(clientBefore + DEPOSIT - 4000n);
      expect((await w.channels.channel(w.id)).closed).to.equal(true);
      await expect(w.channels.connect(w.server).redeemAndClose(w.id, 5000n, await voucher(w, w.id, 5000n)))
        .to.be.revertedWithCustomError(w.channels, "ChannelIsClosed")
        .withArgs(w.id);
    });

    it("redeemAndClose checks the caller and the voucher like redeem", async function () {
      const w = await openWorld();
      await expect(w.channels.connect(w.client).redeemAndClose(w.id, 10n, await voucher(w, w.id, 10n)))
        .to.be.revertedWithCustomError(w.channels, "ChannelUnauthorized")
        .withArgs(w.id, w.client.address, w.server.address);
      await expect(w.channels.connect(w.server).redeemAndClose(w.id, 10n, await voucher(w, w.id, 10n, w.stranger)))
        .to.be.revertedWithCustomError(w.channels, "ChannelBadVoucherSigner")
        .withArgs(w.id, w.stranger.address, w.client.address);
      expect((await w.channels.channel(w.id)).closed).to.equal(false);
    });

    it("a fully paid channel closes with no refund transfer", async function () {
      const w = await openWorld();
      await w.channels.connect(w.server).redeem(w.id, DEPOSIT, await voucher(w, w.id, DEPOSIT));
      await expect(w.channels.connect(w.server).closeByServer(w.id)).to.emit(w.channels, "ChannelClosed").withArgs(w.id, 0n);
    });
  });

  describe("governance", function () {
    it("sets fee, close timeout and reward pool within limits", async function () {
      const w = await networkHelpers.loadFixture(world);
      await expect(w.channels.setFee(2001)).to.be.revertedWithCustomError(w.channels, "ChannelFeeTooHigh").withArgs(2001, 2000);
      await expect(w.channels.setFee(2000)).to.emit(w.channels, "FeeSet").withArgs(2000);
      await expect(w.channels.setCloseTimeout(0)).to.be.revertedWithCustomError(w.channels, "ChannelZeroCloseTimeout");
      await expect(w.channels.setCloseTimeout(5)).to.emit(w.channels, "CloseTimeoutSet").withArgs(5);
      await expect(w.channels.setRewardPool(ZeroAddress)).to.be.revertedWithCustomError(w.channels, "ChannelZeroAddress");
      await expect(w.channels.setRewardPool(w.stranger.address)).to.emit(w.channels, "RewardPoolSet").withArgs(w.stranger.address);
      expect([await w.channels.feeBps(), await w.channels.closeTimeout(), await w.channels.rewardPool()]).to.deep.equal([
        2000n,
        5n,
        w.stranger.address,
      ]);
      const gov = await w.channels.GOVERNANCE_ROLE();
      for (const call of [
        w.channels.connect(w.stranger).setFee(1),
        w.channels.connect(w.stranger).setCloseTimeout(1),
        w.channels.connect(w.stranger).setRewardPool(w.stranger.address),
        w.channels.connect(w.stranger).setTrustRecorder(ZeroAddress),
      ]) {
        await expect(call).to.be.revertedWithCustomError(w.channels, "AccessControlUnauthorizedAccount").withArgs(w.stranger.address, gov);
      }
    });

    it("without a trust recorder, redemptions pay and record nothing", async function () {
      const w = await openWorld();
      await expect(w.channels.setTrustRecorder(ZeroAddress)).to.emit(w.channels, "TrustRecorderSet").withArgs(ZeroAddress);
      await w.channels.connect(w.server).redeem(w.id, 100n, await voucher(w, w.id, 100n));
      expect((await w.channels.channel(w.id)).paid).to.equal(100n);
      expect((await w.trust.record(w.server.address)).paidWork).to.equal(0n);
    });

    it("a zero fee sends nothing to the pool", async function () {
      const w = await openWorld();
      await w.channels.setFee(0);
      await expect(w.channels.connect(w.server).redeem(w.id, 100n, await voucher(w, w.id, 100n)))
        .to.emit(w.channels, "VoucherRedeemed")
        .withArgs(w.id, 100n, 100n, 0n);
      expect(await w.token.balanceOf(await w.rewards.getAddress())).to.equal(0n);
    });

    it("refuses zero addresses at construction", async function () {
      const w = await networkHelpers.loadFixture(world);
      const factory = await ethers.getContractFactory("PaymentChannels");
      const token = await w.token.getAddress();
      const staking = await w.staking.getAddress();
      await expect(factory.deploy(ZeroAddress, token, staking, w.stranger.address, 0, 1)).to.be.revertedWithCustomError(
        w.channels,
        "ChannelZeroAddress",
      );
    });
  });
});
