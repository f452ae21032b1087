import { hexlify } from "ethers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ModelDirectory } from "../../../engine/model/modelDir.js";
import { SeededRandom } from "../../../engine/random.js";
import { Head } from "../../../engine/runtime/head.js";
import { encodeActivations } from "../../../protocol/activations.js";
import { ErrorCode, MessageType, encodeMessage, maxFrameBytesFor, type Hop } from "../../../protocol/wire.js";
import { generate } from "../../../client/generate.js";
import { LocalPipeline } from "../../../client/localPipeline.js";
import { RemotePipeline } from "../../../client/remotePipeline.js";
import { randomModel, scratchDir } from "../../engine/helpers.js";
import { RawPeer } from "../../support/rawPeer.js";
import { startServer, type RunningServer } from "../support.js";

const scratch = scratchDir();
let model: ModelDirectory;
let running: RunningServer;
const FRAMES = 10_000;
const rng = new SeededRandom(2026);
const int = (n: number): number => Math.floor(rng.uniform() * n);
const bytes = (n: number): Uint8Array => Uint8Array.from({ length: n }, () => int(256));

beforeAll(async () => {
  model = randomModel(scratch.dir, "fuzz", { hidden_size: 32, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 512 });
  running = await startServer(
    model,
    0,
    model.config.numLayers,
    scratch.dir,
    { maxSessions: 16, maxStepTokens: 64 },
    undefined,
    undefined,
    { allowedHosts: ["127.0.0.1"] },
  );
});
afterAll(async () => {
  await running.stop();
  scratch.cleanup();
});

const H = () => model.config.hiddenSize;
const sid = (): string => hexlify(bytes(32));
const stepFrame = (sessionId: string, step: bigint, position: number, rows = 1, cols = H(), route: Hop[] = [], tag?: string): Uint8Array =>
  encodeMessage({
    type: MessageType.Step,
    requestId: 1 + int(1e6),
    sessionId,
    step,
    position,
    outputEncoding: "fp32",
    input: encodeActivations(new Float32Array(rows * cols).fill(0.1), rows, cols, "fp32"),
    route,
    ...(tag === undefined ? {} : { tag }),
  });
const hop = (url: string): Hop => ({ url, sessionId: sid(), tag: hexlify(bytes(32)) });
/** Next hops a server must refuse before running the step: not ws://HOST:PORT, or a host it does not forward to. */
const BAD_HOP_URLS = ["http://127.0.0.1:9", "ws://127.0.0.1:9/admin", "ws://u:p@127.0.0.1:9", "ws://10.1.2.3:9", "ws://127.0.0.1:0", "no url", ""];

/** Message type bytes the protocol does not define. */
const UNKNOWN_TYPES = Array.from({ length: 256 }, (_, t) => t).filter((t) => !(Object.values(MessageType) as number[]).includes(t));

/** One malformed or out-of-protocol frame, chosen at random, with the error codes it may get. */
function badFrame(own: string, foreign: string): { frame: Uint8Array | string; codes: number[] } {
  const valid = stepFrame(own, 0n, 0);
  switch (int(14)) {
    case 0: // truncated
      return { frame: valid.subarray(0, int(valid.length)), codes: [ErrorCode.BadFrame, ErrorCode.BadShape, ErrorCode.BadEncoding] };
    case 1: // random bytes
      return { frame: bytes(1 + int(200)), codes: Object.values(ErrorCode) };
    case 2: {
      // declared payload far beyond the limit
      const f = Uint8Array.from(valid);
      new DataView(f.buffer).setUint32(f.length - H() * 4 - 4, 0xfffffff0, true);
      return { frame: f, codes: [ErrorCode.BadShape] };
    }
    case 3: {
      // unknown encoding byte
      const f = Uint8Array.from(valid);
      f[f.length - H() * 4 - 13] = 7 + int(200);
      return { frame: f, codes: [ErrorCode.BadEncoding] };
    }
    case 4: // wrong width
      return { frame: stepFrame(own, 0n, 0, 1, H() + 1 + int(5)), codes: [ErrorCode.BadShape] };
    case 5: // too many rows
      return { frame: stepFrame(own, 0n, 0, 65 + int(10)), codes: [ErrorCode.BadShape] };
    case 6: // unknown message type
      return { frame: Uint8Array.of(UNKNOWN_TYPES[int(UNKNOWN_TYPES.length)]!, 0, 0, 0, 0, ...bytes(int(20))), codes: [ErrorCode.UnknownType] };
    case 7: // a session that does not exist, or belongs to another connection
      return { frame: stepFrame(int(2) === 0 ? sid() : foreign, 0n, 0), codes: [ErrorCode.UnknownSession] };
    case 8: // positions out of order
      return { frame: stepFrame(own, BigInt(1 + int(5)), int(3)), codes: [ErrorCode.BadPosition] };
    case 9: // a route whose next hop is no shard server URL, or on a host the server does not forward to
      return { frame: stepFrame(own, 0n, 0, 1, H(), [hop(BAD_HOP_URLS[int(BAD_HOP_URLS.length)]!), hop("ws://127.0.0.1:9")]), codes: [ErrorCode.BadRoute] };
    case 10: // a route longer than any server takes
      return { frame: stepFrame(own, 0n, 0, 1, H(), Array.from({ length: 17 + int(200) }, () => hop("ws://127.0.0.1:9"))), codes: [ErrorCode.BadRoute] };
    case 11: // a forwarded (tagged) step on a client's connection: only a link authenticated as a server may deliver one
      return { frame: stepFrame(foreign, 0n, 0, 1, H(), [], hexlify(bytes(32))), codes: [ErrorCode.PeerUnauthenticated] };
    case 12: // the step behind a receipt: a stranger is refused; with a made-up proof, an unknown leaf is not found (or the rate limit bites)
      return int(2) === 0
        ? { frame: encodeMessage({ type: MessageType.FetchStep, requestId: 1 + int(1e6), leaf: sid() }), codes: [ErrorCode.Forbidden, ErrorCode.RateLimited] }
        : {
            frame: encodeMessage({ type: MessageType.FetchStep, requestId: 1 + int(1e6), leaf: sid(), ownerProof: sid() }),
            codes: [ErrorCode.NotFound, ErrorCode.RateLimited],
          };
    default: // a text frame
      return { frame: "hello", codes: [ErrorCode.BadFrame] };
  }
}

describe("the server under malformed frames", () => {
  it("refuses every bad hop URL of the fuzzer before running the step", async () => {
    const peer = await RawPeer.open(running.server.url);
    const own = sid();
    await peer.send(encodeMessage({ type: MessageType.OpenSession, requestId: 1, sessionId: own, maxLength: 16 }));
    for (const url of BAD_HOP_URLS) {
      expect(await peer.send(stepFrame(own, 0n, 0, 1, H(), [hop(url)]))).toMatchObject({ type: MessageType.Error, code: ErrorCode.BadRoute, hop: 0 });
    }
    peer.ws.close();
  });

  it(`answers ${FRAMES} bad frames with errors while an honest client's output stays the same`, async () => {
    const head = await Head.load(model);
    const expected = (await generate(head, await LocalPipeline.load(model), [3, 1, 4], { maxTokens: 24, temperature: 0 })).generatedIds;

    // the honest client keeps generating during the whole attack, and must finish generations while it lasts
    let runsDuringAttack = 0;
    let attackDone = false;
    const honest = (async () => {
      const pipeline = await RemotePipeline.connect([running.server.url], model.config.numLayers, { maxLength: 64 });
      do {
        const out = await generate(head, pipeline, [3, 1, 4], { maxTokens: 24, temperature: 0 });
        expect(out.generatedIds).toEqual(expected);
        if (!attackDone) runsDuringAttack++;
      } while (!attackDone);
      pipeline.close();
    })();

    const owner = await RawPeer.open(running.server.url);
    const foreign = sid();
    expect(await owner.send(encodeMessage({ type: MessageType.OpenSession, requestId: 1, sessionId: foreign, maxLength: 16 }))).toMatchObject({
      type: MessageType.SessionOpened,
    });
    let peer = await RawPeer.open(running.server.url);
    let own = sid();
    await peer.send(encodeMessage({ type: MessageType.OpenSession, requestId: 2, sessionId: own, maxLength: 16 }));
    const heapBefore = process.memoryUsage().heapUsed;
    let errors = 0;
    let closes = 0;
    for (let i = 0; i < FRAMES; i++) {
      const { frame, codes } = badFrame(own, foreign);
      const reply = await peer.send(frame);
      if (reply === "closed") {
        closes++;
        peer = await RawPeer.open(running.server.url);
        own = sid(); // a session id names one session forever: the closed one cannot be reopened
        await peer.send(encodeMessage({ type: MessageType.OpenSession, requestId: 2, sessionId: own, maxLength: 16 }));
        continue;
      }
      expect(reply.type).toBe(MessageType.Error);
      if (reply.type === MessageType.Error) expect(codes).toContain(reply.code);
      errors++;
    }
    // a frame over the size limit (the largest valid step of this model) closes the connection (1009), it is never buffered
    const big = await RawPeer.open(running.server.url);
    expect(await big.send(new Uint8Array(maxFrameBytesFor(H(), 64) + 1))).toBe("closed");

    attackDone = true;
    await honest;
    expect(errors + closes).toBe(FRAMES);
    expect(runsDuringAttack).toBeGreaterThan(0);
    expect(running.server.sessionCount).toBeLessThanOrEqual(3); // the honest one, the owner's and the fuzzer's
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(256 * 1024 * 1024);
    owner.ws.close();
    peer.ws.close();
  }, 300_000);
});
