import { Wallet, hexlify, randomBytes } from "ethers";
import { describe, expect, it } from "vitest";
import {
  SEAL_BYTES,
  helloTranscript,
  linkKey,
  newEphemeralKey,
  openSealedFrame,
  sealFrame,
  signTranscript,
  signedBy,
  welcomeTranscript,
} from "../../protocol/peerAuth.js";
import { ErrorCode, WireError } from "../../protocol/wire.js";

const connecting = Wallet.createRandom();
const accepting = Wallet.createRandom();
const challenge = hexlify(randomBytes(32));

function refusal(f: () => unknown): WireError {
  try {
    f();
  } catch (err) {
    if (err instanceof WireError) return err;
    throw err;
  }
  throw new Error("accepted");
}

describe("server link authentication", () => {
  it("both sides derive the same link key from the signed handshake; anyone else derives another", () => {
    const a = newEphemeralKey();
    const b = newEphemeralKey();
    const hello = helloTranscript({ challenge, accepting: accepting.address, connecting: connecting.address, connectingKey: a.publicKey });
    const signature = signTranscript(connecting.signingKey, hello);
    expect(signedBy(hello, signature, connecting.address)).toBe(true);
    expect(signedBy(hello, signature, accepting.address)).toBe(false);
    // the same signature over another challenge, or for another ephemeral key, proves nothing
    const other = helloTranscript({ challenge: hexlify(randomBytes(32)), accepting: accepting.address, connecting: connecting.address, connectingKey: a.publicKey });
    expect(signedBy(other, signature, connecting.address)).toBe(false);
    expect(signedBy(hello, "0x1234", connecting.address)).toBe(false);

    const t = { challenge, connecting: connecting.address, accepting: accepting.address, connectingKey: a.publicKey, acceptingKey: b.publicKey };
    const keyA = linkKey(a.privateKey, b.publicKey, t);
    const keyB = linkKey(b.privateKey, a.publicKey, t);
    expect(hexlify(keyA)).toBe(hexlify(keyB));
    expect(keyA.byteLength).toBe(32);
    // a man in the middle with its own ephemeral key in place of b's gets a key the accepting side does not have
    const m = newEphemeralKey();
    expect(hexlify(linkKey(m.privateKey, a.publicKey, { ...t, acceptingKey: m.publicKey }))).not.toBe(hexlify(keyB));
    const welcome = welcomeTranscript(t);
    expect(signedBy(welcome, signTranscript(accepting.signingKey, welcome), accepting.address)).toBe(true);
    expect(signedBy(welcomeTranscript({ ...t, acceptingKey: m.publicKey }), signTranscript(accepting.signingKey, welcome), accepting.address)).toBe(false);
  });

  it("refuses an ephemeral key that is not an X25519 point encoding", () => {
    const a = newEphemeralKey();
    const t = { challenge, connecting: connecting.address, accepting: accepting.address, connectingKey: a.publicKey, acceptingKey: "0x00" };
    const err = refusal(() => linkKey(a.privateKey, "0x00", t));
    expect(err.wireCode).toBe(ErrorCode.PeerUnauthenticated);
    expect(err.message).toBe("ephemeral key 0x00 is not an X25519 public key");
  });

  it("sealed frames open only unaltered, in order, under the link key", () => {
    const key = randomBytes(32);
    const frame = Uint8Array.from([4, 1, 0, 0, 0, 9, 9, 9]);
    const sealed = sealFrame(key, 0n, frame);
    expect(sealed.byteLength).toBe(frame.byteLength + SEAL_BYTES);
    expect(Array.from(openSealedFrame(key, 0n, sealed))).toEqual(Array.from(frame));
    const altered = sealed.slice();
    altered[6] = altered[6]! ^ 1; // one bit of the payload
    const bad = refusal(() => openSealedFrame(key, 0n, altered));
    expect(bad.wireCode).toBe(ErrorCode.BadLinkMac);
    expect(bad.message).toBe("frame 0 on an authenticated link fails its MAC: altered, reordered or replayed on the way");
    // replayed as a later frame, or opened with another key
    expect(refusal(() => openSealedFrame(key, 1n, sealed)).message).toBe("frame 1 on an authenticated link fails its MAC: altered, reordered or replayed on the way");
    expect(refusal(() => openSealedFrame(randomBytes(32), 0n, sealed)).wireCode).toBe(ErrorCode.BadLinkMac);
    expect(refusal(() => openSealedFrame(key, 2n, new Uint8Array(5))).message).toBe("frame 2 on an authenticated link is 5 bytes, too short for its 32-byte MAC");
  });
});
