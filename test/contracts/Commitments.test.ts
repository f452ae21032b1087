import { expect } from "chai";
import { network } from "hardhat";
import { Signature, TypedDataEncoder, Wallet, ZeroHash, concat, hexlify, keccak256, randomBytes, recoverAddress, toBeHex, type Signer } from "ethers";
import { RECEIPT_CHAIN_TYPES, canonicalSignature, receiptDomain } from "../../protocol/eip712.js";
import { chainNext, chainOf as tsChainOf, receiptChainDigest, type ReceiptChainHead } from "../../protocol/receiptChain.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { MerkleTree, verifyMerkleProof } from "../../protocol/merkle.js";
import { receiptLeaf, type Receipt } from "../../protocol/receipt.js";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/types";
import { PARAMS, VARIANT, registerServer, worldFixture, type World } from "./fixtures.js";

const { ethers, networkHelpers } = await network.create();
const world = worldFixture(ethers);
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

type ReceiptChain = ReceiptChainHead;

function receipt(server: string, step: number, overrides: Partial<Receipt> = {}): Receipt {
  return {
    sessionId: keccak256(toBeHex(7, 32)),
    step: BigInt(step),
    firstLayer: 0,
    lastLayer: 4,
    variantId: VARIANT,
    inputHash: keccak256(toBeHex(step * 2 + 1, 32)),
    outputHash: keccak256(toBeHex(step * 2 + 2, 32)),
    tokens: step === 0 ? 12 : 1,
    server,
    ...overrides,
  };
}

/** postBatch for `who`'s registration over [first, last) of VARIANT. */
function post(w: World, who: HardhatEthersSigner, root: string, count: number, from: bigint | number, to: bigint | number, first = 0, last = 4) {
  return w.commitments.connect(who).postBatch(root, VARIANT, first, last, count, from, to);
}

describe("Commitments", function () {
  async function serverWorld() {
    const w = await networkHelpers.loadFixture(world);
    await registerServer(w, w.server, 0, 4);
    return w;
  }

  describe("postBatch", function () {
    it("records an immutable batch with its registration, deadline and stake, and emits BatchPosted", async function () {
      const w = await serverWorld();
      const now = BigInt(await networkHelpers.time.latest());
      const root = keccak256("0x01");
      const deadline = now + 10n + PARAMS.timing.challengeWindow;
      await networkHelpers.time.setNextBlockTimestamp(now + 10n);
      await expect(post(w, w.server, root, 3, now - 50n, now))
        .to.emit(w.commitments, "BatchPosted")
        .withArgs(0n, w.server.address, 1n, root, 3, now - 50n, now, deadline);
      const block = await ethers.provider.getBlockNumber();
      const b = await w.commitments.batch(0);
      expect([
        b.server, b.receiptCount, b.registrationId, b.fromTime, b.toTime, b.postedAt, b.challengeDeadline, b.postedBlock,
        b.firstLayer, b.lastLayer, b.stake, b.root,
      ]).to.deep.equal([
        w.server.address, 3n, 1n, now - 50n, now, now + 10n, deadline, BigInt(block), 0n, 4n, await w.staking.minServerStake(4), root,
      ]);
      expect(await w.commitments.batchVariant(0)).to.equal(VARIANT);
      expect((await w.staking.operator(w.server.address)).slashableUntil).to.equal(deadline);
      expect(await w.commitments.batchCount()).to.equal(1n);
      expect(await w.commitments.serverBatchCount(w.server.address)).to.equal(1n);
      await post(w, w.server, keccak256("0x02"), 1, now, now);
      expect(await w.commitments.serverBatchIds(w.server.address, 0, 10)).to.deep.equal([0n, 1n]);
      expect(await w.commitments.serverBatchIds(w.server.address, 1, 10)).to.deep.equal([1n]);
      expect(await w.commitments.serverBatchIds(w.server.address, 2, 10)).to.deep.equal([]);
    });

    it("accepts only a registered server, for exactly the variant and range it is registered for", async function () {
      const w = await serverWorld();
      await expect(post(w, w.stranger, keccak256("0x01"), 1, 0, 0))
        .to.be.revertedWithCustomError(w.commitments, "CommitmentsNotRegistered")
        .withArgs(w.stranger.address);
      // regression: a server staked for layers [0, 4) cannot commit work for [0, 8)
      await expect(post(w, w.server, keccak256("0x01"), 1, 0, 0, 0, 8))
        .to.be.revertedWithCustomError(w.commitments, "CommitmentsNotRegisteredFor")
        .withArgs(w.server.address, VARIANT, 0, 8);
      const other = keccak256("0x0bad");
      await expect(w.commitments.connect(w.server).postBatch(keccak256("0x01"), other, 0, 4, 1, 0, 0))
        .to.be.revertedWithCustomError(w.commitments, "CommitmentsNotRegisteredFor")
        .withArgs(w.server.address, other, 0, 4);
    });

    it("keeps each batch's registration record after the server re-registers and deregisters", async function () {
      const w = await serverWorld();
      await post(w, w.server, keccak256("0x01"), 1, 0, 0);
      await expect(w.staking.connect(w.server).registerServer(VARIANT, 4, 8, "ws://127.0.0.1:9004", 10n))
        .to.emit(w.staking, "RegistrationEnded")
        .withArgs(1n, w.server.address);
      await post(w, w.server, keccak256("0x02"), 1, 0, 0, 4, 8);
      await w.staking.connect(w.server).deregister();
      const reRegisteredAt = BigInt((await ethers.provider.getBlock(-2))!.timestamp);
      const deregisteredAt = BigInt(await networkHelpers.time.latest());
      const [b0, b1] = [await w.commitments.batch(0), await w.commitments.batch(1)];
      expect([b0.registrationId, b1.registrationId]).to.deep.equal([1n, 2n]);
      const [r1, r2] = [await w.staking.registration(1), await w.staking.registration(2)];
      expect([r1.operator, r1.variant, r1.firstLayer, r1.lastLayer]).to.deep.equal([w.server.address, VARIANT, 0n, 4n]);
      expect([r2.operator, r2.variant, r2.firstLayer, r2.lastLayer]).to.deep.equal([w.server.address, VARIANT, 4n, 8n]);
      expect([r1.endedAt, r2.registeredAt, r2.endedAt]).to.deep.equal([reRegisteredAt, reRegisteredAt, deregisteredAt]);
      await expect(w.staking.registration(3)).to.be.revertedWithCustomError(w.staking, "StakingUnknownRegistration").withArgs(3);
    });

    it("rejects a zero root and an empty batch", async function () {
      const w = await serverWorld();
      await expect(post(w, w.server, ethers.ZeroHash, 1, 0, 0)).to.be.revertedWithCustomError(w.commitments, "CommitmentsZeroRoot");
      await expect(post(w, w.server, keccak256("0x01"), 0, 0, 0)).to.be.revertedWithCustomError(w.commitments, "CommitmentsEmptyBatch");
    });

    it("rejects time ranges that are inverted, in the future or overlap the previous batch", async function () {
      const w = await serverWorld();
      const c = w.commitments;
      const postAs = (root: string, from: bigint, to: bigint) => post(w, w.server, root, 1, from, to);
      const now = BigInt(await networkHelpers.time.latest());
      await networkHelpers.time.setNextBlockTimestamp(now + 1n);
      await expect(postAs(keccak256("0x01"), now, now - 1n))
        .to.be.revertedWithCustomError(c, "CommitmentsBadTimeRange")
        .withArgs(now, now - 1n, 0, now + 1n);
      await networkHelpers.time.setNextBlockTimestamp(now + 2n);
      await expect(postAs(keccak256("0x01"), now, now + 3n))
        .to.be.revertedWithCustomError(c, "CommitmentsBadTimeRange")
        .withArgs(now, now + 3n, 0, now + 2n);
      await postAs(keccak256("0x01"), now - 10n, now - 5n);
      const t = BigInt(await networkHelpers.time.latest()) + 1n;
      await networkHelpers.time.setNextBlockTimestamp(t);
      await expect(postAs(keccak256("0x02"), now - 6n, now))
        .to.be.revertedWithCustomError(c, "CommitmentsBadTimeRange")
        .withArgs(now - 6n, now, now - 5n, t);
    });

    it("roots are unique per server: another server's identical root does not block this one", async function () {
      const w = await serverWorld();
      await registerServer(w, w.server2, 4, 8);
      const root = keccak256("0x01");
      // regression: server2 front-runs server's root; server still posts it
      await post(w, w.server2, root, 1, 0, 0, 4, 8);
      await expect(post(w, w.server, root, 1, 0, 0)).to.emit(w.commitments, "BatchPosted");
      await expect(post(w, w.server, root, 1, 0, 0))
        .to.be.revertedWithCustomError(w.commitments, "CommitmentsDuplicateRoot")
        .withArgs(w.server.address, root);
    });

    it("reverts on an unknown batch id", async function () {
      const w = await serverWorld();
      await expect(w.commitments.batch(0)).to.be.revertedWithCustomError(w.commitments, "CommitmentsUnknownBatch").withArgs(0);
    });
  });

  describe("receipts: the TypeScript helpers build what the contract verifies", function () {
    it("a receipt's leaf is the same bytes on both sides", async function () {
      const w = await serverWorld();
      for (let step = 0; step < 5; step++) {
        const r = receipt(w.server.address, step, { sessionId: hexlify(randomBytes(32)), step: BigInt(step) * 1_000_000_007n });
        expect(await w.commitments.receiptLeaf(r)).to.equal(receiptLeaf(r));
      }
    });
  });

  describe("receipt chains: what a server signs off chain", function () {
    /** A session's chain after each of `steps` receipts, as ethers computes it: heads[n] is the head after step n. */
    function chainOf(server: string, steps: number): { receipts: Receipt[]; heads: string[] } {
      const receipts = Array.from({ length: steps }, (_, i) => receipt(server, i));
      const heads: string[] = [];
      for (const r of receipts) heads.push(keccak256(concat([heads.at(-1) ?? ZeroHash, receiptLeaf(r)])));
      return { receipts, heads };
    }

    async function signedChain(w: World, signer: Signer = w.server) {
      const { receipts, heads } = chainOf(w.server.address, 4);
      const chain: ReceiptChain = { sessionId: receipts[0]!.sessionId, server: w.server.address, lastStep: 3n, head: heads[3]! };
      const domain = receiptDomain(w.chainId, await w.commitments.getAddress());
      return { chain, domain, signature: await signer.signTypedData(domain, RECEIPT_CHAIN_TYPES, chain) };
    }

    it("receiptChainNext is keccak256(head ‖ leaf), from bytes32(0) before step 0", async function () {
      const w = await serverWorld();
      // keccak256 of 64 zero bytes
      expect(await w.commitments.receiptChainNext(ZeroHash, ZeroHash)).to.equal("0xad3228b676f7d3cd4284a5443f17f1962b36e491b30a40b2405849e597ba5fb5");
      const { receipts, heads } = chainOf(w.server.address, 5);
      let head = ZeroHash;
      for (const [n, r] of receipts.entries()) {
        head = await w.commitments.receiptChainNext(head, await w.commitments.receiptLeaf(r));
        expect(head).to.equal(heads[n]);
        expect(chainNext(n === 0 ? ZeroHash : heads[n - 1]!, receiptLeaf(r))).to.equal(heads[n]); // protocol/receiptChain.ts
      }
      expect(tsChainOf(receipts.map(receiptLeaf))).to.equal(heads[4]);
      expect(new Set(heads).size).to.equal(5);
    });

    it("receiptChainDigest is the EIP-712 digest ethers computes under Commitments' domain", async function () {
      const w = await serverWorld();
      const { chain, domain } = await signedChain(w);
      const digest = TypedDataEncoder.hash(domain, RECEIPT_CHAIN_TYPES, chain);
      expect(await w.commitments.receiptChainDigest(chain)).to.equal(digest);
      expect(receiptChainDigest(domain, chain)).to.equal(digest); // protocol/receiptChain.ts, word by word
      // the domain is the receipts' one: name, version, chain id and Commitments as verifying contract
      expect(domain).to.deep.equal({ name: "eFed Receipts", version: "1", chainId: w.chainId, verifyingContract: await w.commitments.getAddress() });
      // every field is signed
      for (const changed of [
        { ...chain, sessionId: keccak256("0x01") },
        { ...chain, server: w.server2.address },
        { ...chain, lastStep: 4n },
        { ...chain, head: keccak256("0x02") },
      ]) {
        const other = await w.commitments.receiptChainDigest(changed);
        expect(other).to.equal(TypedDataEncoder.hash(domain, RECEIPT_CHAIN_TYPES, changed));
        expect(other).to.not.equal(digest);
      }
    });

    it("receiptChainSigner recovers the server's signature, and a wallet's", async function () {
      const w = await serverWorld();
      const { chain, signature } = await signedChain(w);
      expect(await w.commitments.receiptChainSigner(chain, signature)).to.equal(w.server.address);
      const wallet = Wallet.createRandom();
      const { signature: walletSignature } = await signedChain(w, wallet);
      expect(await w.commitments.receiptChainSigner(chain, walletSignature)).to.equal(wallet.address);
    });

    it("a chain signed for another chain id or contract recovers to someone else", async function () {
      const w = await serverWorld();
      const { chain } = await signedChain(w);
      const otherChain = await w.server.signTypedData(receiptDomain(w.chainId + 1n, await w.commitments.getAddress()), RECEIPT_CHAIN_TYPES, chain);
      const otherContract = await w.server.signTypedData(receiptDomain(w.chainId, await w.channels.getAddress()), RECEIPT_CHAIN_TYPES, chain);
      expect(await w.commitments.receiptChainSigner(chain, otherChain)).to.not.equal(w.server.address);
      expect(await w.commitments.receiptChainSigner(chain, otherContract)).to.not.equal(w.server.address);
    });

    it("rejects a malleable (high-s) chain signature", async function () {
      const w = await serverWorld();
      const { chain, signature } = await signedChain(w);
      const sig = Signature.from(signature);
      const highS = toBeHex(SECP256K1_N - BigInt(sig.s), 32);
      const flipped = ethers.concat([sig.r, highS, toBeHex(sig.v === 27 ? 28 : 27, 1)]);
      await expect(w.commitments.receiptChainSigner(chain, flipped))
        .to.be.revertedWithCustomError(w.commitments, "ECDSAInvalidSignatureS")
        .withArgs(highS);
    });

    it("regression: TypeScript accepts a signature encoding exactly when OpenZeppelin's ECDSA does on chain", async function () {
      const w = await serverWorld();
      const { chain, domain, signature } = await signedChain(w);
      const digest = TypedDataEncoder.hash(domain, RECEIPT_CHAIN_TYPES, chain);
      const sig = Signature.from(signature);
      const encodings: Record<string, string> = {
        canonical: sig.serialized,
        compact64: sig.compactSerialized,
        vZeroOne: ethers.concat([sig.r, sig.s, toBeHex(sig.v - 27, 1)]),
        v29: ethers.concat([sig.r, sig.s, toBeHex(29, 1)]),
        highS: ethers.concat([sig.r, toBeHex(SECP256K1_N - BigInt(sig.s), 32), toBeHex(sig.v === 27 ? 28 : 27, 1)]),
        zeroS: ethers.concat([sig.r, toBeHex(0, 32), toBeHex(sig.v, 1)]),
      };
      const verdicts: Record<string, [boolean, boolean]> = {};
      for (const [name, encoded] of Object.entries(encodings)) {
        const onChain = await w.commitments.receiptChainSigner(chain, encoded).then(
          (a) => a === w.server.address,
          () => false,
        );
        let offChain = true;
        try {
          expect(recoverAddress(digest, canonicalSignature(encoded))).to.equal(w.server.address);
        } catch (err) {
          expect(err).to.be.instanceOf(InvalidArgumentError);
          offChain = false;
        }
        verdicts[name] = [onChain, offChain];
      }
      expect(verdicts).to.deep.equal({
        canonical: [true, true],
        compact64: [false, false],
        vZeroOne: [false, false],
        v29: [false, false],
        highS: [false, false],
        zeroS: [false, false],
      });
    });
  });

  describe("receipt proofs: what the contract verifies", function () {
    for (const count of [1, 2, 3, 7, 64, 257]) {
      it(`Merkle proofs of a ${count}-receipt batch verify on chain`, async function () {
        const w = await serverWorld();
        const receipts = Array.from({ length: count }, (_, i) => receipt(w.server.address, i));
        const tree = new MerkleTree(receipts.map(receiptLeaf));
        await post(w, w.server, tree.root, count, 0, 0);
        const indices = count <= 8 ? receipts.keys() : [0, 1, count >> 1, count - 2, count - 1].values();
        for (const i of indices) {
          const proof = tree.proof(i);
          expect(verifyMerkleProof(tree.root, receiptLeaf(receipts[i]!), proof)).to.equal(true);
          expect(await w.commitments.verifyReceipt(0, receipts[i]!, proof)).to.equal(true);
        }
      });
    }

    it("rejects a tampered receipt, a wrong proof, and another server's receipt", async function () {
      const w = await serverWorld();
      const receipts = Array.from({ length: 5 }, (_, i) => receipt(w.server.address, i));
      const tree = new MerkleTree(receipts.map(receiptLeaf));
      await post(w, w.server, tree.root, 5, 0, 0);
      const tampered = { ...receipts[2]!, outputHash: keccak256("0xbad0") };
      expect(await w.commitments.verifyReceipt(0, tampered, tree.proof(2))).to.equal(false);
      expect(verifyMerkleProof(tree.root, receiptLeaf(tampered), tree.proof(2))).to.equal(false);
      expect(await w.commitments.verifyReceipt(0, receipts[2]!, tree.proof(3))).to.equal(false);
      // the same leaf data claimed for another server: leaf differs, and so does the batch owner
      const other = { ...receipts[2]!, server: w.server2.address };
      expect(await w.commitments.verifyReceipt(0, other, tree.proof(2))).to.equal(false);
    });

    it("a receipt under the root for another layer range than the batch's registration does not verify", async function () {
      const w = await serverWorld();
      const wide = receipt(w.server.address, 0, { lastLayer: 8 });
      const tree = new MerkleTree([receiptLeaf(wide)]);
      await post(w, w.server, tree.root, 1, 0, 0);
      expect(verifyMerkleProof(tree.root, receiptLeaf(wide), [])).to.equal(true);
      expect(await w.commitments.verifyReceipt(0, wide, [])).to.equal(false);
    });

    it("a batch posted by server A cannot prove server B's receipt even with B's valid tree", async function () {
      const w = await serverWorld();
      await registerServer(w, w.server2, 4, 8);
      const bReceipt = receipt(w.server2.address, 0, { firstLayer: 4, lastLayer: 8 });
      const tree = new MerkleTree([receiptLeaf(bReceipt)]);
      await post(w, w.server, tree.root, 1, 0, 0);
      expect(await w.commitments.verifyReceipt(0, bReceipt, tree.proof(0))).to.equal(false);
    });
  });
});

describe("protocol helpers (off chain)", function () {
  it("validate receipt fields with a message naming the field", function () {
    const r = receipt(Wallet.createRandom().address, 0);
    expect(() => receiptLeaf({ ...r, tokens: 0 })).to.throw(InvalidArgumentError, "receipt.tokens 0");
    expect(() => receiptLeaf({ ...r, firstLayer: 4, lastLayer: 4 })).to.throw(InvalidArgumentError, "[4, 4) is empty");
    expect(() => receiptLeaf({ ...r, lastLayer: 70000 })).to.throw(InvalidArgumentError, "receipt.lastLayer 70000 is outside uint16");
    expect(() => receiptLeaf({ ...r, sessionId: "0x12" })).to.throw(InvalidArgumentError, "receipt.sessionId must be 32 bytes");
    expect(() => receiptLeaf({ ...r, step: -1n })).to.throw(InvalidArgumentError, "receipt.step -1 is outside uint64");
    expect(() => receiptLeaf({ ...r, server: "0xnope" })).to.throw(InvalidArgumentError, "receipt.server 0xnope is not an address");
  });

  it("Merkle trees reject no leaves, bad leaves and bad indices", function () {
    expect(() => new MerkleTree([])).to.throw(InvalidArgumentError, "at least one leaf");
    expect(() => new MerkleTree(["0x1234"])).to.throw(InvalidArgumentError, "leaf 0 must be 32 bytes");
    const tree = new MerkleTree([keccak256("0x01")]);
    expect(tree.root).to.equal(keccak256("0x01"));
    expect(tree.proof(0)).to.deep.equal([]);
    expect(() => tree.proof(1)).to.throw(InvalidArgumentError, "leaf index 1 is outside [0, 1)");
  });
});
