import { expect } from "chai";
import { network } from "hardhat";
import { ZeroAddress, parseEther } from "ethers";
import { PARAMS, worldFixture } from "./fixtures.js";

const { ethers, networkHelpers } = await network.create();
const world = worldFixture(ethers);
const WAD = 10n ** 18n;

/** The documented formula, recomputed independently. */
function expectedTrust(passed: bigint, failed: bigint, paid: bigint, p = PARAMS.trust): bigint {
  const credit = passed * WAD + (paid * WAD) / p.paidPerCredit;
  const numerator = p.priorPass + credit;
  let trust = (numerator * WAD) / (numerator + p.priorFail + failed * p.failureWeight * WAD);
  // retain^failed by squaring, rounding down like the contract
  let base = (p.failureRetainBps * WAD) / 10_000n;
  let factor = WAD;
  for (let e = failed; e > 0n; e >>= 1n) {
    if (e & 1n) factor = (factor * base) / WAD;
    base = (base * base) / WAD;
  }
  if (failed > 0n) trust = (trust * factor) / WAD;
  return trust;
}

/** The world with `slasher` also holding PAYMENTS_ROLE, standing in for PaymentChannels. */
async function paymentsWorld() {
  const w = await networkHelpers.loadFixture(world);
  await w.trust.grantRole(await w.trust.PAYMENTS_ROLE(), w.slasher.address);
  return w;
}

describe("TrustScores", function () {
  it("starts a new server at priorPass / (priorPass + priorFail)", async function () {
    const w = await networkHelpers.loadFixture(world);
    expect(await w.trust.trustOf(w.server.address)).to.equal(parseEther("0.5"));
    expect(await w.trust.isTrusted(w.server.address)).to.equal(true);
  });

  it("moves with audits and paid work exactly as documented", async function () {
    const w = await paymentsWorld();
    const t = w.trust.connect(w.slasher);
    const paid = parseEther("2500");
    await expect(t.recordAudit(w.server.address, true))
      .to.emit(w.trust, "AuditRecorded")
      .withArgs(w.server.address, true, expectedTrust(1n, 0n, 0n));
    await expect(t.recordPayment(w.server.address, paid))
      .to.emit(w.trust, "PaymentRecorded")
      .withArgs(w.server.address, paid, expectedTrust(1n, 0n, paid));
    for (let i = 0; i < 19; i++) await t.recordAudit(w.server.address, true);
    await expect(t.recordAudit(w.server.address, false))
      .to.emit(w.trust, "AuditRecorded")
      .withArgs(w.server.address, false, expectedTrust(20n, 1n, paid));
    expect(await w.trust.record(w.server.address)).to.deep.equal([20n, 1n, paid]);
  });

  it("regression: nothing self-reported is credited; a batch's claimed volume buys no trust", async function () {
    const w = await networkHelpers.loadFixture(world);
    // the old path: one receipt declared as 2^64 tokens; now batches carry no token count at all
    expect(w.trust.interface.getFunction("recordPayment")).to.not.equal(null);
    expect(w.trust.interface.hasFunction("recordWork")).to.equal(false);
    expect(w.commitments.interface.getFunction("postBatch").inputs.map((i) => i.name)).to.deep.equal([
      "root", "variant", "firstLayer", "lastLayer", "receiptCount", "fromTime", "toTime",
    ]);
    await expect(w.trust.connect(w.server).recordPayment(w.server.address, 1n << 64n))
      .to.be.revertedWithCustomError(w.trust, "AccessControlUnauthorizedAccount")
      .withArgs(w.server.address, await w.trust.PAYMENTS_ROLE());
    expect(await w.trust.trustOf(w.server.address)).to.equal(parseEther("0.5"));
  });

  it("a failed audit costs a veteran at least half its trust: paid credit buys no immunity", async function () {
    const w = await paymentsWorld();
    const t = w.trust.connect(w.slasher);
    const paid = parseEther("1000") * 10n ** 8n; // 10^8 audits' worth of paid work
    await t.recordPayment(w.server.address, paid);
    const before = await w.trust.trustOf(w.server.address);
    expect(before).to.equal(expectedTrust(0n, 0n, paid));
    await t.recordAudit(w.server.address, false);
    const after = await w.trust.trustOf(w.server.address);
    expect(after).to.equal(expectedTrust(0n, 1n, paid));
    expect(after <= before / 2n).to.equal(true);
    await t.recordAudit(w.server.address, false);
    expect(await w.trust.isTrusted(w.server.address)).to.equal(false);
  });

  it("one failed audit drops a new server below θ", async function () {
    const w = await networkHelpers.loadFixture(world);
    await w.trust.connect(w.slasher).recordAudit(w.server.address, false);
    expect(await w.trust.trustOf(w.server.address)).to.equal(expectedTrust(0n, 1n, 0n));
    expect(await w.trust.isTrusted(w.server.address)).to.equal(false);
  });

  it("only the auditor records audits, only payments record payments; a zero server is rejected; payments saturate", async function () {
    const w = await paymentsWorld();
    await expect(w.trust.connect(w.stranger).recordAudit(w.server.address, true))
      .to.be.revertedWithCustomError(w.trust, "AccessControlUnauthorizedAccount")
      .withArgs(w.stranger.address, await w.trust.AUDITOR_ROLE());
    await expect(w.trust.connect(w.stranger).recordPayment(w.server.address, 1))
      .to.be.revertedWithCustomError(w.trust, "AccessControlUnauthorizedAccount")
      .withArgs(w.stranger.address, await w.trust.PAYMENTS_ROLE());
    await expect(w.trust.connect(w.slasher).recordAudit(ZeroAddress, true)).to.be.revertedWithCustomError(w.trust, "TrustZeroServer");
    await expect(w.trust.connect(w.slasher).recordPayment(ZeroAddress, 1)).to.be.revertedWithCustomError(w.trust, "TrustZeroServer");
    await w.trust.connect(w.slasher).recordPayment(w.server.address, 1n << 200n);
    await w.trust.connect(w.slasher).recordPayment(w.server.address, 1n);
    expect((await w.trust.record(w.server.address)).paidWork).to.equal((1n << 128n) - 1n);
  });

  it("records passed audits in bulk exactly as that many single passes; auditor only; no zero count or server", async function () {
    const w = await networkHelpers.loadFixture(world);
    const t = w.trust.connect(w.slasher);
    await expect(t.recordPassedAudits(w.server.address, 7n))
      .to.emit(w.trust, "AuditsPassed")
      .withArgs(w.server.address, 7n, expectedTrust(7n, 0n, 0n));
    for (let i = 0; i < 7; i++) await t.recordAudit(w.server2.address, true);
    expect(await w.trust.trustOf(w.server.address)).to.equal(await w.trust.trustOf(w.server2.address));
    expect(await w.trust.record(w.server.address)).to.deep.equal([7n, 0n, 0n]);
    await expect(w.trust.connect(w.stranger).recordPassedAudits(w.server.address, 1n))
      .to.be.revertedWithCustomError(w.trust, "AccessControlUnauthorizedAccount")
      .withArgs(w.stranger.address, await w.trust.AUDITOR_ROLE());
    await expect(t.recordPassedAudits(w.server.address, 0n)).to.be.revertedWithCustomError(w.trust, "TrustZeroCount");
    await expect(t.recordPassedAudits(ZeroAddress, 1n)).to.be.revertedWithCustomError(w.trust, "TrustZeroServer");
  });

  it("governance sets consistent parameters only", async function () {
    const w = await networkHelpers.loadFixture(world);
    const good = {
      priorPass: 3n * WAD,
      priorFail: WAD,
      paidPerCredit: 100n,
      failureWeight: 5n,
      failureRetainBps: 2500n,
      threshold: parseEther("0.9"),
    };
    await expect(w.trust.setParams(good)).to.emit(w.trust, "ParamsSet").withArgs([3n * WAD, WAD, 100n, 5n, 2500n, parseEther("0.9")]);
    expect(await w.trust.params()).to.deep.equal([3n * WAD, WAD, 100n, 5n, 2500n, parseEther("0.9")]);
    expect(await w.trust.trustOf(w.server.address)).to.equal(parseEther("0.75"));
    expect(await w.trust.isTrusted(w.server.address)).to.equal(false);
    for (const bad of [
      { ...good, priorPass: 0n },
      { ...good, priorFail: 0n },
      { ...good, failureWeight: 0n },
      { ...good, paidPerCredit: 0n },
      { ...good, failureRetainBps: 10_001n },
      { ...good, threshold: WAD + 1n },
    ]) {
      await expect(w.trust.setParams(bad))
        .to.be.revertedWithCustomError(w.trust, "TrustBadParams")
        .withArgs([bad.priorPass, bad.priorFail, bad.paidPerCredit, bad.failureWeight, bad.failureRetainBps, bad.threshold]);
    }
    await expect(w.trust.connect(w.stranger).setParams(good))
      .to.be.revertedWithCustomError(w.trust, "AccessControlUnauthorizedAccount")
      .withArgs(w.stranger.address, await w.trust.GOVERNANCE_ROLE());
  });
});

describe("VerifierRewards", function () {
  it("allocates from the unallocated balance and pays claims", async function () {
    const w = await networkHelpers.loadFixture(world);
    const pool = await w.rewards.getAddress();
    await w.token.connect(w.client).transfer(pool, 1000n);
    expect(await w.rewards.unallocated()).to.equal(1000n);
    await expect(w.rewards.connect(w.slasher).allocate(w.verifier.address, 600n))
      .to.emit(w.rewards, "RewardAllocated")
      .withArgs(w.verifier.address, 600n);
    await expect(w.rewards.connect(w.slasher).allocate(w.verifier.address, 401n))
      .to.be.revertedWithCustomError(w.rewards, "RewardsInsufficientPool")
      .withArgs(401n, 400n);
    expect(await w.rewards.owed(w.verifier.address)).to.equal(600n);
    expect(await w.rewards.totalOwed()).to.equal(600n);
    const before = await w.token.balanceOf(w.verifier.address);
    await expect(w.rewards.connect(w.verifier).claim()).to.emit(w.rewards, "RewardClaimed").withArgs(w.verifier.address, 600n);
    expect(await w.token.balanceOf(w.verifier.address)).to.equal(before + 600n);
    expect(await w.rewards.unallocated()).to.equal(400n);
    await expect(w.rewards.connect(w.verifier).claim())
      .to.be.revertedWithCustomError(w.rewards, "RewardsNothingToClaim")
      .withArgs(w.verifier.address);
  });

  it("only the rewarder allocates, never to the zero address", async function () {
    const w = await networkHelpers.loadFixture(world);
    await expect(w.rewards.connect(w.stranger).allocate(w.verifier.address, 1))
      .to.be.revertedWithCustomError(w.rewards, "AccessControlUnauthorizedAccount")
      .withArgs(w.stranger.address, await w.rewards.REWARDER_ROLE());
    await expect(w.rewards.connect(w.slasher).allocate(ZeroAddress, 0)).to.be.revertedWithCustomError(w.rewards, "RewardsZeroVerifier");
  });
});

describe("EFedToken", function () {
  it("only the owner mints", async function () {
    const w = await networkHelpers.loadFixture(world);
    await expect(w.token.mint(w.stranger.address, 5n))
      .to.emit(w.token, "Transfer")
      .withArgs(ZeroAddress, w.stranger.address, 5n);
    await expect(w.token.connect(w.stranger).mint(w.stranger.address, 5n))
      .to.be.revertedWithCustomError(w.token, "OwnableUnauthorizedAccount")
      .withArgs(w.stranger.address);
    expect([await w.token.name(), await w.token.symbol(), await w.token.decimals()]).to.deep.equal(["eFed", "EFED", 18n]);
  });
});
