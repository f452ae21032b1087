import { expect } from "chai";
import { network } from "hardhat";
import { keccak256, parseEther, toUtf8Bytes, ZeroAddress } from "ethers";
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
        .withArgs(w.server.address, VARIANT, 1n, 2, 5, 7, "ws://a");
      const s = await w.staking.server(w.server.address);
      const at = BigInt(await networkHelpers.time.latest());
      expect([s.variant, s.firstLayer, s.lastLayer, s.registrationId, s.serverSince, s.pricePerToken, s.endpoint]).to.deep.equal([
        VARIANT, 2n, 5n, 1n, at, 7n, "ws://a",
      ]);
      expect(await w.staking.registration(1)).to.deep.equal([w.server.address, 2n, 5n, at, VARIANT, 0n]);
      expect(await w.staking.serverRegistration(w.server.address)).to.deep.equal([1n, VARIANT, 2n, 5n]);
      expect(await w.staking.registrationCount()).to.equal(1n);
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
      expect([await w.staking.verifierCount(), await w.staking.verifierAt(0)]).to.deep.equal([1n, w.verifier.address]);
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
      expect(await w.staking.verifierCount()).to.equal(0n);
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

    it("regression: a raised unbonding delay applies to pending unbonds; a lowered one does not shorten them", async function () {
      const w = await networkHelpers.loadFixture(world);
      await stake(w, w.server, 10n);
      await w.staking.connect(w.server).requestUnbond(10n);
      const requestedAt = BigInt(await networkHelpers.time.latest());
      const t = PARAMS.timing;
      await w.staking.setTiming({ ...t, unbondingDelay: t.unbondingDelay * 2n });
      expect(await w.staking.withdrawableAt(w.server.address)).to.equal(requestedAt + t.unbondingDelay * 2n);
      await w.staking.setTiming({ ...t, unbondingDelay: t.challengeWindow + t.maxDisputeDuration + 1n });
      expect(await w.staking.withdrawableAt(w.server.address)).to.equal(requestedAt + t.unbondingDelay);
      await networkHelpers.time.setNextBlockTimestamp(requestedAt + t.unbondingDelay - 1n);
      await expect(w.staking.connect(w.server).withdraw())
        .to.be.revertedWithCustomError(w.staking, "StakingUnbondingNotReady")
        .withArgs(w.server.address, requestedAt + t.unbondingDelay, requestedAt + t.unbondingDelay - 1n);
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

  describe("disputes: per-dispute locks, unlock, slash", function () {
    const A = keccak256(toUtf8Bytes("dispute A"));
    const B = keccak256(toUtf8Bytes("dispute B"));

    it("only the slasher role may lock, unlock or slash", async function () {
      const w = await networkHelpers.loadFixture(world);
      const role = await w.staking.SLASHER_ROLE();
      for (const call of [
        w.staking.connect(w.stranger).lock(w.server.address, A, 1),
        w.staking.connect(w.stranger).unlock(A),
        w.staking.connect(w.stranger).slash(A, 1, w.stranger.address),
      ]) {
        await expect(call)
          .to.be.revertedWithCustomError(w.staking, "AccessControlUnauthorizedAccount")
          .withArgs(w.stranger.address, role);
      }
    });

    it("locked stake cannot be withdrawn; unlocking a dispute frees exactly its lock", async function () {
      const w = await networkHelpers.loadFixture(world);
      await stake(w, w.server, 100n);
      await expect(w.staking.connect(w.slasher).lock(w.server.address, A, 70n))
        .to.emit(w.staking, "StakeLocked")
        .withArgs(w.server.address, A, w.slasher.address, 70n, 70n);
      await expect(w.staking.connect(w.slasher).lock(w.server.address, B, 31n))
        .to.be.revertedWithCustomError(w.staking, "StakingLockExceedsStake")
        .withArgs(w.server.address, 31n, 70n, 100n);
      await expect(w.staking.connect(w.slasher).lock(w.server.address, A, 1n))
        .to.be.revertedWithCustomError(w.staking, "StakingLockExists")
        .withArgs(w.slasher.address, A);
      await w.staking.connect(w.server).requestUnbond(100n);
      await networkHelpers.time.increase(unbondingDelay);
      await expect(w.staking.connect(w.server).withdraw()).to.emit(w.staking, "Withdrawn").withArgs(w.server.address, 30n);
      await expect(w.staking.connect(w.server).withdraw())
        .to.be.revertedWithCustomError(w.staking, "StakingStakeLocked")
        .withArgs(w.server.address, 70n, 70n);
      await expect(w.staking.connect(w.slasher).unlock(A))
        .to.emit(w.staking, "StakeUnlocked")
        .withArgs(w.server.address, A, w.slasher.address, 70n, 0n);
      await expect(w.staking.connect(w.slasher).unlock(A))
        .to.be.revertedWithCustomError(w.staking, "StakingUnknownLock")
        .withArgs(w.slasher.address, A);
      await expect(w.staking.connect(w.server).withdraw()).to.emit(w.staking, "Withdrawn").withArgs(w.server.address, 70n);
    });

    it("regression: slash then unlock of one dispute leaves another dispute's lock whole", async function () {
      const w = await networkHelpers.loadFixture(world);
      await stake(w, w.server, 100n);
      await w.staking.connect(w.slasher).lock(w.server.address, A, 40n);
      await w.staking.connect(w.slasher).lock(w.server.address, B, 50n);
      await expect(w.staking.connect(w.slasher).slash(A, 40n, w.verifier.address))
        .to.emit(w.staking, "Slashed")
        .withArgs(w.server.address, A, 40n, w.verifier.address);
      await expect(w.staking.connect(w.slasher).unlock(A))
        .to.emit(w.staking, "StakeUnlocked")
        .withArgs(w.server.address, A, w.slasher.address, 0n, 50n);
      const op = await w.staking.operator(w.server.address);
      expect([op.bonded, op.locked]).to.deep.equal([60n, 50n]);
      expect((await w.staking.lockOf(w.slasher.address, B)).amount).to.equal(50n);
      await expect(w.staking.connect(w.slasher).slash(B, 50n, w.verifier.address))
        .to.emit(w.staking, "Slashed")
        .withArgs(w.server.address, B, 50n, w.verifier.address);
    });

    it("regression: unlock then slash never makes a later unlock revert", async function () {
      const w = await networkHelpers.loadFixture(world);
      await stake(w, w.server, 100n);
      await w.staking.connect(w.slasher).lock(w.server.address, A, 30n);
      await w.staking.connect(w.slasher).lock(w.server.address, B, 30n);
      await w.staking.connect(w.slasher).unlock(B);
      await w.staking.connect(w.slasher).slash(A, 20n, w.verifier.address);
      await expect(w.staking.connect(w.slasher).unlock(A))
        .to.emit(w.staking, "StakeUnlocked")
        .withArgs(w.server.address, A, w.slasher.address, 10n, 0n);
      expect((await w.staking.operator(w.server.address)).locked).to.equal(0n);
    });

    it("slashes bonded stake first, then unbonding, never beyond its own lock", async function () {
      const w = await networkHelpers.loadFixture(world);
      await stake(w, w.server, 100n);
      await w.staking.connect(w.server).requestUnbond(40n);
      await w.staking.connect(w.slasher).lock(w.server.address, A, 90n);
      await w.staking.connect(w.slasher).slash(A, 80n, w.verifier.address);
      let op = await w.staking.operator(w.server.address);
      expect([op.bonded, op.unbonding, op.locked]).to.deep.equal([0n, 20n, 10n]);
      await expect(w.staking.connect(w.slasher).slash(A, 11n, w.verifier.address))
        .to.be.revertedWithCustomError(w.staking, "StakingSlashExceedsLock")
        .withArgs(A, 11n, 10n);
      await w.staking.connect(w.slasher).slash(A, 10n, w.verifier.address);
      op = await w.staking.operator(w.server.address);
      expect([op.bonded, op.unbonding, op.locked]).to.deep.equal([0n, 10n, 0n]);
      expect(await w.token.balanceOf(w.verifier.address)).to.equal((await w.token.balanceOf(w.client.address)) + 90n);
      expect(await w.staking.totalStaked()).to.equal(10n);
      await expect(w.staking.connect(w.slasher).slash(B, 1n, w.verifier.address))
        .to.be.revertedWithCustomError(w.staking, "StakingUnknownLock")
        .withArgs(w.slasher.address, B);
    });

    it("rejects zero amounts and zero addresses", async function () {
      const w = await networkHelpers.loadFixture(world);
      await stake(w, w.server, 100n);
      await expect(w.staking.connect(w.slasher).lock(w.server.address, A, 0)).to.be.revertedWithCustomError(w.staking, "StakingZeroAmount");
      await expect(w.staking.connect(w.slasher).lock(ZeroAddress, A, 1)).to.be.revertedWithCustomError(w.staking, "StakingZeroAddress");
      await w.staking.connect(w.slasher).lock(w.server.address, A, 10n);
      await expect(w.staking.connect(w.slasher).slash(A, 0, w.verifier.address)).to.be.revertedWithCustomError(w.staking, "StakingZeroAmount");
      await expect(w.staking.connect(w.slasher).slash(A, 1, ZeroAddress)).to.be.revertedWithCustomError(w.staking, "StakingZeroAddress");
    });

    it("regression: locked stake is not collateral; a server whose free stake is short stops being active", async function () {
      const w = await networkHelpers.loadFixture(world);
      await registerServer(w, w.server, 0, 4, 3n);
      await w.staking.connect(w.slasher).lock(w.server.address, A, 1n);
      expect(await w.staking.freeBonded(w.server.address)).to.equal((await w.staking.minServerStake(4)) - 1n);
      expect(await w.staking.isActiveServer(w.server.address)).to.equal(false);
      let [info] = await w.staking.servers(VARIANT, 0, 1);
      expect([info?.collateralized, info?.eligible, info?.stake]).to.deep.equal([false, false, await w.staking.minServerStake(4)]);
      await w.staking.connect(w.slasher).slash(A, 1n, w.verifier.address);
      await w.staking.connect(w.slasher).unlock(A);
      expect(await w.staking.isActiveServer(w.server.address)).to.equal(false);
      [info] = await w.staking.servers(VARIANT, 0, 1);
      expect(info?.stake).to.equal((await w.staking.minServerStake(4)) - 1n);
    });
  });

  describe("eligibility: probation and θ", function () {
    it("regression: a fresh server is not eligible before its probation; then is, until its trust falls below θ", async function () {
      const w = await networkHelpers.loadFixture(world);
      await registerServer(w, w.server, 0, 4);
      const since = (await w.staking.server(w.server.address)).serverSince;
      expect(since).to.equal(BigInt(await networkHelpers.time.latest()));
      expect(await w.staking.isEligible(w.server.address)).to.equal(false);
      await networkHelpers.time.setNextBlockTimestamp(since + PARAMS.timing.probationPeriod - 1n);
      await networkHelpers.mine();
      expect(await w.staking.isEligible(w.server.address)).to.equal(false);
      await networkHelpers.mine(1, { interval: 1 });
      expect(await w.staking.isEligible(w.server.address)).to.equal(true);
      // changing price or endpoint keeps the registration and the probation clock
      await w.staking.connect(w.server).registerServer(VARIANT, 0, 4, "ws://127.0.0.1:9999", 1n);
      expect((await w.staking.server(w.server.address)).registrationId).to.equal(1n);
      expect(await w.staking.isEligible(w.server.address)).to.equal(true);
      await w.trust.connect(w.slasher).recordAudit(w.server.address, false);
      expect(await w.staking.isEligible(w.server.address)).to.equal(false);
    });

    it("deregistering restarts probation: leaving and coming back does not skip it", async function () {
      const w = await networkHelpers.loadFixture(world);
      await registerServer(w, w.server, 0, 4);
      await networkHelpers.time.increase(PARAMS.timing.probationPeriod);
      expect(await w.staking.isEligible(w.server.address)).to.equal(true);
      await w.staking.connect(w.server).deregister();
      await w.staking.connect(w.server).registerServer(VARIANT, 0, 4, "ws://127.0.0.1:9000", 1n);
      expect(await w.staking.isEligible(w.server.address)).to.equal(false);
      expect((await w.staking.server(w.server.address)).registrationId).to.equal(2n);
    });

    it("is never eligible without a trust source", async function () {
      const w = await networkHelpers.loadFixture(world);
      await registerServer(w, w.server, 0, 4);
      await networkHelpers.time.increase(PARAMS.timing.probationPeriod);
      await w.staking.setTrustSource(ZeroAddress);
      expect(await w.staking.isEligible(w.server.address)).to.equal(false);
    });
  });

  describe("discovery", function () {
    it("lists servers of a variant with range, endpoint, price, stake and trust, paginated", async function () {
      const w = await networkHelpers.loadFixture(world);
      await registerServer(w, w.server, 0, 4, 11n);
      await registerServer(w, w.server2, 4, 8, 12n);
      expect(await w.staking.serverCount(VARIANT)).to.equal(2n);
      const all = await w.staking.servers(VARIANT, 0, 10);
      expect(all.map((s) => [s.operator, s.firstLayer, s.lastLayer, s.pricePerToken, s.endpoint, s.trust, s.collateralized, s.eligible])).to.deep.equal([
        [w.server.address, 0n, 4n, 11n, "ws://127.0.0.1:9000", parseEther("0.5"), true, false],
        [w.server2.address, 4n, 8n, 12n, "ws://127.0.0.1:9004", parseEther("0.5"), true, false],
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
      await expect(w.staking.setTiming({ challengeWindow: 100, maxDisputeDuration: 50, unbondingDelay: 150, probationPeriod: 1 }))
        .to.be.revertedWithCustomError(w.staking, "StakingUnbondingTooShort")
        .withArgs(150, 150);
      await expect(w.staking.setTiming({ challengeWindow: 100, maxDisputeDuration: 50, unbondingDelay: 151, probationPeriod: 0 }))
        .to.be.revertedWithCustomError(w.staking, "StakingZeroProbation");
      await expect(w.staking.setTiming({ challengeWindow: 100, maxDisputeDuration: 50, unbondingDelay: 151, probationPeriod: 7 }))
        .to.emit(w.staking, "TimingSet")
        .withArgs([100n, 50n, 151n, 7n]);
      expect(await w.staking.timing()).to.deep.equal([100n, 50n, 151n, 7n]);
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
      await expect(w.staking.connect(w.stranger).setTiming({ challengeWindow: 1, maxDisputeDuration: 1, unbondingDelay: 3, probationPeriod: 1 }))
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
