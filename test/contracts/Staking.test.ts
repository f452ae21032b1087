import { expect } from "chai";
import { network } from "hardhat";
import { parseEther, ZeroAddress } from "ethers";
import { MANIFEST_URI, NUM_LAYERS, PARAMS, VARIANT, registerServer, signPermit, stake, worldFixture } from "./fixtures.js";

const { ethers, networkHelpers } = await network.create();
const world = worldFixture(ethers);
const { serverBaseStake, serverStakePerLayer, verifierMinStake } = PARAMS.stake;
const { unbondingDelay } = PARAMS.timing;
const Role = { None: 0n, Server: 1n, Verifier: 2n };

describe("Staking", function () {
  describe("deposit", function () {
    it("pulls tokens into bonded stake and emits StakeDeposited", async function () {
      const w = await networkHelpers.loadFixture(world);
      const amount = parseEther("1234");
      await w.token.connect(w.server).approve(await w.staking.getAddress(), amount);
      await expect(w.staking.connect(w.server).deposit(amount))
        .to.emit(w.staking, "StakeDeposited")
        .withArgs(w.server.address, amount);
      const op = await w.staking.operator(w.server.address);
      expect(op.bonded).to.equal(amount);
      expect(op.unbonding).to.equal(0n);
      expect(await w.staking.totalStaked()).to.equal(amount);
      expect(await w.token.balanceOf(await w.staking.getAddress())).to.equal(amount);
    });

    it("rejects a zero amount", async function () {
      const w = await networkHelpers.loadFixture(world);
      await expect(w.staking.connect(w.server).deposit(0)).to.be.revertedWithCustomError(w.staking, "StakingZeroAmount");
    });

    it("deposits with a permit in one transaction", async function () {
      const w = await networkHelpers.loadFixture(world);
      const amount = parseEther("50");
      const deadline = BigInt(await networkHelpers.time.latest()) + 3600n;
      const sig = await signPermit(w, w.server, await w.staking.getAddress(), amount, deadline);
      await expect(w.staking.connect(w.server).depositWithPermit(amount, deadline, sig.v, sig.r, sig.s))
        .to.emit(w.staking, "StakeDeposited")
        .withArgs(w.server.address, amount);
      expect((await w.staking.operator(w.server.address)).bonded).to.equal(amount);
    });

    it("still deposits when the permit was front-run, and fails without allowance", async function () {
      const w = await networkHelpers.loadFixture(world);
      const amount = parseEther("50");
      const deadline = BigInt(await networkHelpers.time.latest()) + 3600n;
      const spender = await w.staking.getAddress();
      const sig = await signPermit(w, w.server, spender, amount, deadline);
      // someone else submits the permit first
      await w.token.connect(w.stranger).permit(w.server.address, spender, amount, deadline, sig.v, sig.r, sig.s);
      await w.staking.connect(w.server).depositWithPermit(amount, deadline, sig.v, sig.r, sig.s);
      expect((await w.staking.operator(w.server.address)).bonded).to.equal(amount);
      // allowance used up; a replayed permit cannot create a new one
      await expect(w.staking.connect(w.server).depositWithPermit(amount, deadline, sig.v, sig.r, sig.s))
        .to.be.revertedWithCustomError(w.token, "ERC20InsufficientAllowance")
        .withArgs(spender, 0n, amount);
    });
  });

  describe("registerServer", function () {
    it("requires the minimum stake for the number of layers", async function () {
      const w = await networkHelpers.loadFixture(world);
      const needed = serverBaseStake + serverStakePerLayer * 3n;
      expect(await w.staking.minServerStake(3)).to.equal(needed);
      await stake(w, w.server, needed - 1n);
      await expect(w.staking.connect(w.server).registerServer(VARIANT, 2, 5, "ws://a", 1))
        .to.be.revertedWithCustomError(w.staking, "StakingInsufficientStake")
        .withArgs(w.server.address, needed - 1n, needed);
      await stake(w, w.server, 1n);
      await expect(w.staking.connect(w.server).registerServer(VARIANT, 2, 5, "ws://a", 7))
        .to.emit(w.staking, "ServerRegistered")
        .withArgs(w.server.address, VARIANT, 2, 5, 7, "ws://a");
      const s = await w.staking.server(w.server.address);
      expect([s.variant, s.firstLayer, s.lastLayer, s.pricePerToken, s.endpoint]).to.deep.equal([VARIANT, 2n, 5n, 7n, "ws://a"]);
      expect((await w.staking.operator(w.server.address)).role).to.equal(Role.Server);
      expect(await w.staking.isActiveServer(w.server.address)).to.equal(true);
    });

    it("rejects empty and out-of-model layer ranges", async function () {
      const w = await networkHelpers.loadFixture(world);
      await stake(w, w.server, parseEther("10000"));
      for (const [first, last] of [
        [3, 3],
        [4, 2],
        [0, NUM_LAYERS + 1],
      ] as const) {
        await expect(w.staking.connect(w.server).registerServer(VARIANT, first, last, "ws://a", 1))
          .to.be.revertedWithCustomError(w.staking, "StakingBadLayerRange")
          .withArgs(first, last, NUM_LAYERS);
      }
    });

    it("rejects unknown and retired variants", async function () {
      const w = await networkHelpers.loadFixture(world);
      await stake(w, w.server, parseEther("10000"));
      const unknown = ethers.id("unknown");
      await expect(w.staking.connect(w.server).registerServer(unknown, 0, 1, "ws://a", 1))
        .to.be.revertedWithCustomError(w.staking, "StakingVariantInactive")
        .withArgs(unknown);
      await w.registry.retireVariant(VARIANT);
      await expect(w.staking.connect(w.server).registerServer(VARIANT, 0, 1, "ws://a", 1))
        .to.be.revertedWithCustomError(w.staking, "StakingVariantInactive")
        .withArgs(VARIANT);
    });

    it("rejects an empty or overlong endpoint", async function () {
      const w = await networkHelpers.loadFixture(world);
      await stake(w, w.server, parseEther("10000"));
      await expect(w.staking.connect(w.server).registerServer(VARIANT, 0, 1, "", 1))
        .to.be.revertedWithCustomError(w.staking, "StakingBadEndpoint")
        .withArgs(0, 256);
      await expect(w.staking.connect(w.server).registerServer(VARIANT, 0, 1, "x".repeat(257), 1))
        .to.be.revertedWithCustomError(w.staking, "StakingBadEndpoint")
        .withArgs(257, 256);
    });

    it("updates a registration, moving the server between variants", async function () {
      const w = await networkHelpers.loadFixture(world);
      const other = ethers.id("other variant");
      await w.registry.registerVariant(other, 4, MANIFEST_URI);
      await registerServer(w, w.server, 0, 4);
      expect(await w.staking.serverCount(VARIANT)).to.equal(1n);
      await w.staking.connect(w.server).registerServer(other, 1, 3, "ws://b", 9);
      expect(await w.staking.serverCount(VARIANT)).to.equal(0n);
      expect(await w.staking.serverCount(other)).to.equal(1n);
      const [info] = await w.staking.servers(other, 0, 10);
      expect(info?.endpoint).to.equal("ws://b");
      expect(info?.pricePerToken).to.equal(9n);
    });

    it("refuses a verifier", async function () {
      const w = await networkHelpers.loadFixture(world);
      await stake(w, w.verifier, parseEther("5000"));
      await w.staking.connect(w.verifier).registerVerifier();
      await expect(w.staking.connect(w.verifier).registerServer(VARIANT, 0, 1, "ws://a", 1))
        .to.be.revertedWithCustomError(w.staking, "StakingRoleConflict")
        .withArgs(w.verifier.address, Role.Verifier);
    });
  });

  describe("registerVerifier", function () {
    it("requires the verifier minimum and a free role", async function () {
      const w = await networkHelpers.loadFixture(world);
      await stake(w, w.verifier, verifierMinStake - 1n);
      await expect(w.staking.connect(w.verifier).registerVerifier())
        .to.be.revertedWithCustomError(w.staking, "StakingInsufficientStake")
        .withArgs(w.verifier.address, verifierMinStake - 1n, verifierMinStake);
      await stake(w, w.verifier, 1n);
      await expect(w.staking.connect(w.verifier).registerVerifier())
        .to.emit(w.staking, "VerifierRegistered")
        .withArgs(w.verifier.address);
      expect(await w.staking.isActiveVerifier(w.verifier.address)).to.equal(true);
      await expect(w.staking.connect(w.verifier).registerVerifier())
        .to.be.revertedWithCustomError(w.staking, "StakingRoleConflict")
        .withArgs(w.verifier.address, Role.Verifier);
    });
  });

  describe("deregister", function () {
    it("removes a server from discovery and frees its role", async function () {
      const w = await networkHelpers.loadFixture(world);
      await registerServer(w, w.server);
      await expect(w.staking.connect(w.server).deregister())
        .to.emit(w.staking, "Deregistered")
        .withArgs(w.server.address, Role.Server);
      expect(await w.staking.serverCount(VARIANT)).to.equal(0n);
      expect(await w.staking.isActiveServer(w.server.address)).to.equal(false);
      expect((await w.staking.server(w.server.address)).endpoint).to.equal("");
    });

    it("deregisters a verifier", async function () {
      const w = await networkHelpers.loadFixture(world);
      await stake(w, w.verifier, verifierMinStake);
      await w.staking.connect(w.verifier).registerVerifier();
      await expect(w.staking.connect(w.verifier).deregister())
        .to.emit(w.staking, "Deregistered")
        .withArgs(w.verifier.address, Role.Verifier);
      expect(await w.staking.isActiveVerifier(w.verifier.address)).to.equal(false);
    });

    it("rejects an unregistered caller", async function () {
      const w = await networkHelpers.loadFixture(world);
      await expect(w.staking.connect(w.stranger).deregister())
        .to.be.revertedWithCustomError(w.staking, "StakingNotRegistered")
        .withArgs(w.stranger.address);
    });
  });

  describe("unbonding and withdrawal", function () {
    it("emits UnbondRequested with the time it becomes withdrawable", async function () {
      const w = await networkHelpers.loadFixture(world);
      await stake(w, w.server, 10n);
      const at = BigInt(await networkHelpers.time.latest()) + 100n;
      await networkHelpers.time.setNextBlockTimestamp(at);
      await expect(w.staking.connect(w.server).requestUnbond(10n))
        .to.emit(w.staking, "UnbondRequested")
        .withArgs(w.server.address, 10n, at + unbondingDelay);
    });

    it("withdraws exactly after the delay, never before", async function () {
      const w = await networkHelpers.loadFixture(world);
      const amount = parseEther("300");
      await stake(w, w.server, amount);
      await w.staking.connect(w.server).requestUnbond(amount);
      const readyAt = BigInt(await networkHelpers.time.latest()) + unbondingDelay;
      expect((await w.staking.operator(w.server.address)).unbondReadyAt).to.equal(readyAt);
      await networkHelpers.time.setNextBlockTimestamp(readyAt - 1n);
      await expect(w.staking.connect(w.server).withdraw())
        .to.be.revertedWithCustomError(w.staking, "StakingUnbondingNotReady")
        .withArgs(w.server.address, readyAt, readyAt - 1n);
      await networkHelpers.time.setNextBlockTimestamp(readyAt);
      const before = await w.token.balanceOf(w.server.address);
      await expect(w.staking.connect(w.server).withdraw()).to.emit(w.staking, "Withdrawn").withArgs(w.server.address, amount);
      expect(await w.token.balanceOf(w.server.address)).to.equal(before + amount);
      expect(await w.staking.totalStaked()).to.equal(0n);
    });

    it("keeps a registered operator's minimum bonded", async function () {
      const w = await networkHelpers.loadFixture(world);
      await registerServer(w, w.server, 0, 2);
      const min = await w.staking.minServerStake(2);
      await stake(w, w.server, 5n);
      await expect(w.staking.connect(w.server).requestUnbond(6n))
        .to.be.revertedWithCustomError(w.staking, "StakingInsufficientStake")
        .withArgs(w.server.address, min - 1n, min);
      await w.staking.connect(w.server).requestUnbond(5n);
    });

    it("rejects zero, excessive and empty requests", async function () {
      const w = await networkHelpers.loadFixture(world);
      await stake(w, w.server, 10n);
      await expect(w.staking.connect(w.server).requestUnbond(0)).to.be.revertedWithCustomError(w.staking, "StakingZeroAmount");
      await expect(w.staking.connect(w.server).requestUnbond(11n))
        .to.be.revertedWithCustomError(w.staking, "StakingUnbondExceedsBonded")
        .withArgs(w.server.address, 11n, 10n);
      await expect(w.staking.connect(w.server).withdraw())
        .to.be.revertedWithCustomError(w.staking, "StakingNothingToWithdraw")
        .withArgs(w.server.address);
    });

    it("restarts the delay when more is unbonded", async function () {
      const w = await networkHelpers.loadFixture(world);
      await stake(w, w.server, 10n);
      await w.staking.connect(w.server).requestUnbond(4n);
      await networkHelpers.time.increase(unbondingDelay / 2n);
      await w.staking.connect(w.server).requestUnbond(6n);
      const readyAt = BigInt(await networkHelpers.time.latest()) + unbondingDelay;
      expect((await w.staking.operator(w.server.address)).unbondReadyAt).to.equal(readyAt);
      expect((await w.staking.operator(w.server.address)).unbonding).to.equal(10n);
    });
  });

  describe("disputes: lock, unlock, slash", function () {
    it("only the slasher role may lock, unlock or slash", async function () {
      const w = await networkHelpers.loadFixture(world);
      const role = await w.staking.SLASHER_ROLE();
      for (const call of [
        w.staking.connect(w.stranger).lock(w.server.address, 1),
        w.staking.connect(w.stranger).unlock(w.server.address, 1),
        w.staking.connect(w.stranger).slash(w.server.address, 1, w.stranger.address),
      ]) {
        await expect(call)
          .to.be.revertedWithCustomError(w.staking, "AccessControlUnauthorizedAccount")
          .withArgs(w.stranger.address, role);
      }
    });

    it("locked stake cannot be withdrawn; unlocking frees it", async function () {
      const w = await networkHelpers.loadFixture(world);
      await stake(w, w.server, 100n);
      await expect(w.staking.connect(w.slasher).lock(w.server.address, 70n))
        .to.emit(w.staking, "StakeLocked")
        .withArgs(w.server.address, 70n, 70n);
      await expect(w.staking.connect(w.slasher).lock(w.server.address, 31n))
        .to.be.revertedWithCustomError(w.staking, "StakingLockExceedsStake")
        .withArgs(w.server.address, 31n, 70n, 100n);
      await w.staking.connect(w.server).requestUnbond(100n);
      await networkHelpers.time.increase(unbondingDelay);
      await expect(w.staking.connect(w.server).withdraw()).to.emit(w.staking, "Withdrawn").withArgs(w.server.address, 30n);
      await expect(w.staking.connect(w.server).withdraw())
        .to.be.revertedWithCustomError(w.staking, "StakingStakeLocked")
        .withArgs(w.server.address, 70n, 70n);
      await expect(w.staking.connect(w.slasher).unlock(w.server.address, 71n))
        .to.be.revertedWithCustomError(w.staking, "StakingUnlockExceedsLocked")
        .withArgs(w.server.address, 71n, 70n);
      await expect(w.staking.connect(w.slasher).unlock(w.server.address, 70n))
        .to.emit(w.staking, "StakeUnlocked")
        .withArgs(w.server.address, 70n, 0n);
      await expect(w.staking.connect(w.server).withdraw()).to.emit(w.staking, "Withdrawn").withArgs(w.server.address, 70n);
    });

    it("slashes bonded stake first, then unbonding, and never more than exists", async function () {
      const w = await networkHelpers.loadFixture(world);
      await stake(w, w.server, 100n);
      await w.staking.connect(w.server).requestUnbond(40n);
      await w.staking.connect(w.slasher).lock(w.server.address, 90n);
      await expect(w.staking.connect(w.slasher).slash(w.server.address, 80n, w.verifier.address))
        .to.emit(w.staking, "Slashed")
        .withArgs(w.server.address, 80n, w.verifier.address);
      let op = await w.staking.operator(w.server.address);
      expect([op.bonded, op.unbonding, op.locked]).to.deep.equal([0n, 20n, 20n]);
      await expect(w.staking.connect(w.slasher).slash(w.server.address, 1000n, w.verifier.address))
        .to.emit(w.staking, "Slashed")
        .withArgs(w.server.address, 20n, w.verifier.address);
      op = await w.staking.operator(w.server.address);
      expect([op.bonded, op.unbonding, op.locked]).to.deep.equal([0n, 0n, 0n]);
      expect(await w.token.balanceOf(w.verifier.address)).to.equal((await w.token.balanceOf(w.client.address)) + 100n);
      expect(await w.staking.totalStaked()).to.equal(0n);
      await expect(w.staking.connect(w.slasher).slash(w.server.address, 1n, w.verifier.address))
        .to.be.revertedWithCustomError(w.staking, "StakingInsufficientStake")
        .withArgs(w.server.address, 0n, 1n);
    });

    it("rejects zero amounts and a zero beneficiary", async function () {
      const w = await networkHelpers.loadFixture(world);
      await stake(w, w.server, 100n);
      await expect(w.staking.connect(w.slasher).lock(w.server.address, 0)).to.be.revertedWithCustomError(w.staking, "StakingZeroAmount");
      await expect(w.staking.connect(w.slasher).unlock(w.server.address, 0)).to.be.revertedWithCustomError(w.staking, "StakingZeroAmount");
      await expect(w.staking.connect(w.slasher).slash(w.server.address, 0, w.verifier.address)).to.be.revertedWithCustomError(
        w.staking,
        "StakingZeroAmount",
      );
      await expect(w.staking.connect(w.slasher).slash(w.server.address, 1, ZeroAddress)).to.be.revertedWithCustomError(
        w.staking,
        "StakingZeroAddress",
      );
    });

    it("a slashed server falls below its minimum and stops being active", async function () {
      const w = await networkHelpers.loadFixture(world);
      await registerServer(w, w.server, 0, 4, 3n);
      await w.staking.connect(w.slasher).slash(w.server.address, 1n, w.verifier.address);
      expect(await w.staking.isActiveServer(w.server.address)).to.equal(false);
      const [info] = await w.staking.servers(VARIANT, 0, 1);
      expect(info?.collateralized).to.equal(false);
      expect(info?.stake).to.equal((await w.staking.minServerStake(4)) - 1n);
    });
  });

  describe("discovery", function () {
    it("lists servers of a variant with range, endpoint, price, stake and trust, paginated", async function () {
      const w = await networkHelpers.loadFixture(world);
      await registerServer(w, w.server, 0, 4, 11n);
      await registerServer(w, w.server2, 4, 8, 12n);
      expect(await w.staking.serverCount(VARIANT)).to.equal(2n);
      const all = await w.staking.servers(VARIANT, 0, 10);
      expect(all.map((s) => [s.operator, s.firstLayer, s.lastLayer, s.pricePerToken, s.endpoint, s.trust, s.collateralized])).to.deep.equal([
        [w.server.address, 0n, 4n, 11n, "ws://127.0.0.1:9000", parseEther("0.5"), true],
        [w.server2.address, 4n, 8n, 12n, "ws://127.0.0.1:9004", parseEther("0.5"), true],
      ]);
      expect(all[0]?.stake).to.equal(await w.staking.minServerStake(4));
      const second = await w.staking.servers(VARIANT, 1, 1);
      expect(second.map((s) => s.operator)).to.deep.equal([w.server2.address]);
      expect(await w.staking.servers(VARIANT, 2, 5)).to.deep.equal([]);
    });

    it("reports zero trust when no trust source is set", async function () {
      const w = await networkHelpers.loadFixture(world);
      await registerServer(w, w.server);
      await expect(w.staking.setTrustSource(ZeroAddress)).to.emit(w.staking, "TrustSourceSet").withArgs(ZeroAddress);
      const [info] = await w.staking.servers(VARIANT, 0, 1);
      expect(info?.trust).to.equal(0n);
    });
  });

  describe("governance", function () {
    it("requires unbonding to outlast the challenge window plus the longest dispute", async function () {
      const w = await networkHelpers.loadFixture(world);
      await expect(w.staking.setTiming({ challengeWindow: 100, maxDisputeDuration: 50, unbondingDelay: 150 }))
        .to.be.revertedWithCustomError(w.staking, "StakingUnbondingTooShort")
        .withArgs(150, 150);
      await expect(w.staking.setTiming({ challengeWindow: 100, maxDisputeDuration: 50, unbondingDelay: 151 }))
        .to.emit(w.staking, "TimingSet")
        .withArgs([100n, 50n, 151n]);
      expect(await w.staking.timing()).to.deep.equal([100n, 50n, 151n]);
    });

    it("sets stake parameters; strangers cannot", async function () {
      const w = await networkHelpers.loadFixture(world);
      await expect(w.staking.setStakeParams({ serverBaseStake: 1, serverStakePerLayer: 2, verifierMinStake: 3 }))
        .to.emit(w.staking, "StakeParamsSet")
        .withArgs([1n, 2n, 3n]);
      expect(await w.staking.stakeParams()).to.deep.equal([1n, 2n, 3n]);
      expect(await w.staking.minServerStake(10)).to.equal(21n);
      const gov = await w.staking.GOVERNANCE_ROLE();
      await expect(w.staking.connect(w.stranger).setStakeParams({ serverBaseStake: 1, serverStakePerLayer: 2, verifierMinStake: 3 }))
        .to.be.revertedWithCustomError(w.staking, "AccessControlUnauthorizedAccount")
        .withArgs(w.stranger.address, gov);
      await expect(w.staking.connect(w.stranger).setTiming({ challengeWindow: 1, maxDisputeDuration: 1, unbondingDelay: 3 }))
        .to.be.revertedWithCustomError(w.staking, "AccessControlUnauthorizedAccount")
        .withArgs(w.stranger.address, gov);
      await expect(w.staking.connect(w.stranger).setTrustSource(ZeroAddress))
        .to.be.revertedWithCustomError(w.staking, "AccessControlUnauthorizedAccount")
        .withArgs(w.stranger.address, gov);
    });

    it("refuses zero addresses at construction", async function () {
      const w = await networkHelpers.loadFixture(world);
      const factory = await ethers.getContractFactory("Staking");
      await expect(
        factory.deploy(ZeroAddress, await w.token.getAddress(), await w.registry.getAddress(), PARAMS.timing, PARAMS.stake),
      ).to.be.revertedWithCustomError(w.staking, "StakingZeroAddress");
    });
  });
});
