import { expect } from "chai";
import { network } from "hardhat";
import { ZeroHash } from "ethers";
import { MANIFEST_URI, NUM_LAYERS, VARIANT, worldFixture } from "./fixtures.js";

const { ethers, networkHelpers } = await network.create();
const world = worldFixture(ethers);

describe("ModelRegistry", function () {
  it("registers a variant by manifest hash with its layers and URI", async function () {
    const w = await networkHelpers.loadFixture(world);
    const id = ethers.id("manifest B");
    await w.registry.grantRole(await w.registry.REGISTRAR_ROLE(), w.stranger.address);
    const tx = w.registry.connect(w.stranger).registerVariant(id, 22, "https://example.org/b.json");
    await expect(tx).to.emit(w.registry, "VariantRegistered").withArgs(id, w.stranger.address, 22, "https://example.org/b.json");
    const v = await w.registry.variant(id);
    const at = await networkHelpers.time.latest();
    expect([v.numLayers, v.retired, v.registeredAt, v.registrant, v.manifestURI]).to.deep.equal([
      22n,
      false,
      BigInt(at),
      w.stranger.address,
      "https://example.org/b.json",
    ]);
    expect(await w.registry.isActive(id)).to.equal(true);
    expect(await w.registry.variantCount()).to.equal(2n);
    expect(await w.registry.variantIds(0, 10)).to.deep.equal([VARIANT, id]);
    expect(await w.registry.variantIds(1, 1)).to.deep.equal([id]);
    expect(await w.registry.variantIds(0, 1)).to.deep.equal([VARIANT]);
    expect(await w.registry.variantIds(2, 1)).to.deep.equal([]);
  });

  it("regression: only the registrar role registers, so nobody can squat a public manifest hash with a wrong layer count", async function () {
    const w = await networkHelpers.loadFixture(world);
    const id = ethers.id("a public manifest");
    await expect(w.registry.connect(w.stranger).registerVariant(id, 1, "ipfs://squat"))
      .to.be.revertedWithCustomError(w.registry, "AccessControlUnauthorizedAccount")
      .withArgs(w.stranger.address, await w.registry.REGISTRAR_ROLE());
    expect(await w.registry.isActive(id)).to.equal(false);
    await w.registry.registerVariant(id, 32, "ipfs://right");
    expect((await w.registry.variant(id)).numLayers).to.equal(32n);
  });

  it("rejects a zero id, zero layers, a bad URI and a duplicate", async function () {
    const w = await networkHelpers.loadFixture(world);
    await expect(w.registry.registerVariant(ZeroHash, 1, "u")).to.be.revertedWithCustomError(w.registry, "RegistryZeroVariantId");
    await expect(w.registry.registerVariant(ethers.id("x"), 0, "u")).to.be.revertedWithCustomError(w.registry, "RegistryZeroLayers");
    await expect(w.registry.registerVariant(ethers.id("x"), 1, ""))
      .to.be.revertedWithCustomError(w.registry, "RegistryBadManifestURI")
      .withArgs(0, 512);
    await expect(w.registry.registerVariant(ethers.id("x"), 1, "u".repeat(513)))
      .to.be.revertedWithCustomError(w.registry, "RegistryBadManifestURI")
      .withArgs(513, 512);
    await expect(w.registry.registerVariant(VARIANT, NUM_LAYERS, MANIFEST_URI))
      .to.be.revertedWithCustomError(w.registry, "RegistryVariantExists")
      .withArgs(VARIANT);
  });

  it("governance retires a variant, once; strangers cannot", async function () {
    const w = await networkHelpers.loadFixture(world);
    const gov = await w.registry.GOVERNANCE_ROLE();
    await expect(w.registry.connect(w.stranger).retireVariant(VARIANT))
      .to.be.revertedWithCustomError(w.registry, "AccessControlUnauthorizedAccount")
      .withArgs(w.stranger.address, gov);
    await expect(w.registry.retireVariant(VARIANT)).to.emit(w.registry, "VariantRetired").withArgs(VARIANT);
    expect(await w.registry.isActive(VARIANT)).to.equal(false);
    expect((await w.registry.variant(VARIANT)).retired).to.equal(true);
    await expect(w.registry.retireVariant(VARIANT)).to.be.revertedWithCustomError(w.registry, "RegistryVariantRetired").withArgs(VARIANT);
  });

  it("reverts on unknown variants", async function () {
    const w = await networkHelpers.loadFixture(world);
    const id = ethers.id("nope");
    await expect(w.registry.variant(id)).to.be.revertedWithCustomError(w.registry, "RegistryUnknownVariant").withArgs(id);
    await expect(w.registry.retireVariant(id)).to.be.revertedWithCustomError(w.registry, "RegistryUnknownVariant").withArgs(id);
    expect(await w.registry.isActive(id)).to.equal(false);
  });
});
