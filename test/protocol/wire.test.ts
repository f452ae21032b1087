import { Wallet, hexlify, randomBytes } from "ethers";
import { describe, expect, it } from "vitest";
import { encodeActivations } from "../../protocol/activations.js";
import {
  DEFAULT_LIMITS,
  ErrorCode,
  MessageType,
  MAX_SIGN_EVERY,
  PROTOCOL_VERSION,
  WireError,
  decodeMessage,
  encodeMessage,
  type Message,
} from "../../protocol/wire.js";

const session = hexlify(randomBytes(32));
const server = Wallet.createRandom().address;
const activations = encodeActivations(Float32Array.from({ length: 2 * 8 }, (_, i) => i / 3), 2, 8, "fp16");
const limits = { ...DEFAULT_LIMITS, hiddenSize: 8 };

const samples: Message[] = [
  {
    type: MessageType.ServerInfo,
    requestId: 0,
    protocolVersion: PROTOCOL_VERSION,
    chainId: 31337n,
    server,
    variantId: hexlify(randomBytes(32)),
    firstLayer: 2,
    lastLayer: 5,
    hiddenSize: 8,
    maxSessions: 64,
    maxSessionTokens: 2048,
    maxStepTokens: 512,
    maxFrameBytes: 1 << 24,
    pricePerToken: (1n << 200n) + 12345n,
    commitments: Wallet.createRandom().address,
    challenge: hexlify(randomBytes(32)),
    creditSteps: 8,
    signEvery: 256,
  },
  { type: MessageType.OpenSession, requestId: 7, sessionId: session, maxLength: 300 },
  { type: MessageType.SessionOpened, requestId: 7, sessionId: session, forwardKey: hexlify(randomBytes(32)) },
  {
    type: MessageType.Step,
    requestId: 8,
    sessionId: session,
    step: (1n << 40n) + 3n,
    position: 17,
    outputEncoding: "int8",
    input: activations,
    route: [
      { url: "ws://127.0.0.1:9001", sessionId: hexlify(randomBytes(32)), tag: hexlify(randomBytes(32)) },
      { url: "ws://127.0.0.1:9002/ünïcode", sessionId: hexlify(randomBytes(32)), tag: hexlify(randomBytes(32)) },
    ],
  },
  {
    type: MessageType.Step,
    requestId: 11,
    sessionId: session,
    step: 4n,
    position: 9,
    outputEncoding: "fp32",
    input: activations,
    route: [],
    tag: hexlify(randomBytes(32)),
  },
  { type: MessageType.StepForwarded, requestId: 11, sessionId: session, step: 4n },
  {
    type: MessageType.StepResult,
    requestId: 8,
    sessionId: session,
    step: 3n,
    output: activations,
  },
  {
    type: MessageType.StepReceipt,
    requestId: 8,
    sessionId: session,
    step: 3n,
    signed: {
      server,
      firstLayer: 0,
      lastLayer: 4,
      inputHash: hexlify(randomBytes(32)),
      outputHash: hexlify(randomBytes(32)),
    },
  },
  {
    type: MessageType.StepReceipt,
    requestId: 0,
    sessionId: session,
    step: 15n,
    signed: {
      server,
      firstLayer: 4,
      lastLayer: 8,
      inputHash: hexlify(randomBytes(32)),
      outputHash: hexlify(randomBytes(32)),
      chainSignature: hexlify(randomBytes(65)),
    },
  },
  { type: MessageType.FetchStep, requestId: 13, leaf: hexlify(randomBytes(32)) },
  { type: MessageType.FetchStep, requestId: 14, leaf: hexlify(randomBytes(32)), ownerProof: hexlify(randomBytes(32)) },
  { type: MessageType.FetchSessionStep, requestId: 16, sessionId: session, step: 7n },
  { type: MessageType.FetchBatch, requestId: 18, batchId: (1n << 50n) + 9n, offset: 512, limit: 256 },
  {
    type: MessageType.BatchReceipts,
    requestId: 18,
    batchId: 3n,
    total: 1000,
    offset: 256,
    receipts: [0, 1].map((i) => ({
      sessionId: session,
      step: BigInt(i),
      firstLayer: 0,
      lastLayer: 4,
      variantId: hexlify(randomBytes(32)),
      inputHash: hexlify(randomBytes(32)),
      outputHash: hexlify(randomBytes(32)),
      tokens: 3 - i,
      server,
    })),
  },
  { type: MessageType.FetchSessionStep, requestId: 17, sessionId: session, step: (1n << 63n) + 1n, ownerProof: hexlify(randomBytes(32)) },
  { type: MessageType.Authenticate, requestId: 15, address: server, signature: hexlify(randomBytes(65)) },
  { type: MessageType.Authenticated, requestId: 15, address: server },
  {
    type: MessageType.StoredStep,
    requestId: 13,
    receipt: {
      sessionId: session,
      step: 5n,
      firstLayer: 0,
      lastLayer: 4,
      variantId: hexlify(randomBytes(32)),
      inputHash: hexlify(randomBytes(32)),
      outputHash: hexlify(randomBytes(32)),
      tokens: 1,
      server,
    },
    input: activations,
    output: activations,
  },
  {
    type: MessageType.StoredStep,
    requestId: 14,
    receipt: {
      sessionId: session,
      step: 6n,
      firstLayer: 4,
      lastLayer: 8,
      variantId: hexlify(randomBytes(32)),
      inputHash: hexlify(randomBytes(32)),
      outputHash: hexlify(randomBytes(32)),
      tokens: 3,
      server,
    },
    input: activations,
    output: activations,
    batch: { batchId: 42n, proof: [hexlify(randomBytes(32)), hexlify(randomBytes(32))] },
  },
  { type: MessageType.CloseSession, requestId: 9, sessionId: session },
  { type: MessageType.SessionClosed, requestId: 9, sessionId: session },
  { type: MessageType.SessionClosed, requestId: 19, sessionId: session, chain: { lastStep: 20n, signature: hexlify(randomBytes(65)) } },
  { type: MessageType.Error, requestId: 10, code: ErrorCode.UnknownSession, hop: 0, message: "session 0x12… is not open on this connection" },
  { type: MessageType.Error, requestId: 12, code: ErrorCode.Upstream, hop: 2, message: "next hop ws://127.0.0.1:9 is unreachable" },
  { type: MessageType.PeerHello, requestId: 3, server, ephemeralKey: hexlify(randomBytes(32)), signature: hexlify(randomBytes(65)) },
  { type: MessageType.PeerWelcome, requestId: 3, ephemeralKey: hexlify(randomBytes(32)), signature: hexlify(randomBytes(65)) },
];

function wireError(fn: () => unknown): WireError {
  try {
    fn();
  } catch (err) {
    if (err instanceof WireError) return err;
    throw err;
  }
  throw new Error("expected a WireError");
}

describe("wire protocol", () => {
  for (const m of samples) {
    it(`round-trips message type ${m.type}`, () => {
      const decoded = decodeMessage(encodeMessage(m), limits);
      expect(decoded).toEqual(m);
    });
  }

  it("rejects every truncation of every message with BadFrame, naming the field", () => {
    for (const m of samples) {
      const frame = encodeMessage(m);
      for (let cut = 0; cut < frame.byteLength; cut++) {
        const err = wireError(() => decodeMessage(frame.subarray(0, cut), limits));
        expect([ErrorCode.BadFrame, ErrorCode.BadShape, ErrorCode.BadEncoding, ErrorCode.BadRoute]).toContain(err.wireCode);
      }
      expect(wireError(() => decodeMessage(frame.subarray(0, 3), limits)).message).toContain("frame ends inside request id");
    }
  });

  it("rejects trailing bytes, unknown types and oversized frames", () => {
    const frame = encodeMessage(samples[1]!);
    expect(wireError(() => decodeMessage(Uint8Array.from([...frame, 0]), limits)).message).toBe("1 unexpected bytes after the message");
    expect(wireError(() => decodeMessage(Uint8Array.of(99, 0, 0, 0, 0), limits))).toMatchObject({ wireCode: ErrorCode.UnknownType });
    expect(wireError(() => decodeMessage(new Uint8Array(101), { ...limits, maxFrameBytes: 100 })).message).toBe(
      "frame of 101 bytes exceeds the limit of 100",
    );
  });

  it("checks activation shapes against the limits before reading the payload", () => {
    const step = samples[3]! as Extract<Message, { type: 4 }>;
    const wide = { ...step, input: encodeActivations(new Float32Array(9), 1, 9, "fp32") };
    expect(wireError(() => decodeMessage(encodeMessage(wide), limits)).message).toBe("input has 9 columns, expected the hidden size 8");
    const tall = { ...step, input: encodeActivations(new Float32Array(8 * 5), 5, 8, "fp32") };
    expect(wireError(() => decodeMessage(encodeMessage(tall), { ...limits, maxStepTokens: 4 })).message).toBe(
      "input has 5 rows, expected 1..4",
    );
    // a header that lies about the payload length
    const frame = encodeMessage(step);
    const lying = Uint8Array.from(frame);
    const lengthAt = frame.byteLength - step.input.payload.byteLength - 4;
    new DataView(lying.buffer).setUint32(lengthAt, 5, true);
    expect(wireError(() => decodeMessage(lying, limits))).toMatchObject({ wireCode: ErrorCode.BadShape });
  });

  it("speaks protocol version 5 (receipts signed as chains, every ServerInfo.signEvery steps)", () => {
    expect(PROTOCOL_VERSION).toBe(5);
  });

  it("refuses a signing interval outside 1..256 and chain flags other than 0 or 1", () => {
    const info = samples[0]! as Extract<Message, { type: 1 }>;
    for (const signEvery of [0, MAX_SIGN_EVERY + 1]) {
      expect(wireError(() => decodeMessage(encodeMessage({ ...info, signEvery }), limits)).message).toBe(
        `a server signs its receipt chains every 1..256 steps, this one announces ${signEvery}`,
      );
    }
    const receipt = samples.find((m) => m.type === MessageType.StepReceipt && m.signed.chainSignature === undefined)!;
    const flagged = Uint8Array.from(encodeMessage(receipt));
    flagged[flagged.byteLength - 1] = 2; // chain signature flag, the last byte when no signature follows
    expect(wireError(() => decodeMessage(flagged, limits)).message).toBe("chain signature flag 2 is neither 0 (none) nor 1 (a 65-byte signature follows)");
    const closed = Uint8Array.from(encodeMessage({ type: MessageType.SessionClosed, requestId: 1, sessionId: session }));
    closed[closed.byteLength - 1] = 2;
    expect(wireError(() => decodeMessage(closed, limits)).message).toBe("chain flag 2 is neither 0 (nothing left to sign) nor 1 (a signed chain follows)");
  });

  it("rejects an unknown encoding, a bad tag flag and a route longer than allowed", () => {
    const step = samples[3]! as Extract<Message, { type: 4 }>;
    const frame = Uint8Array.from(encodeMessage(step));
    frame[1 + 4 + 32 + 8 + 4] = 9; // output encoding byte
    expect(wireError(() => decodeMessage(frame, limits)).message).toBe("output encoding 9 is not an encoding (0 fp32, 1 fp16, 2 int8)");
    const flagged = Uint8Array.from(encodeMessage(step));
    flagged[1 + 4 + 32 + 8 + 4 + 1] = 2; // tag flag byte
    expect(wireError(() => decodeMessage(flagged, limits)).message).toBe("tag flag 2 is neither 0 (no tag) nor 1 (a 32-byte tag follows)");
    expect(wireError(() => decodeMessage(encodeMessage(step), { ...limits, maxRouteHops: 1 })).message).toBe(
      "route of 2 hops exceeds the limit of 1",
    );
  });
});
