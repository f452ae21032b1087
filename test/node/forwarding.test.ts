import { ZeroAddress, hexlify, randomBytes } from "ethers";
import { WebSocketServer } from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ModelDirectory } from "../../engine/model/modelDir.js";
import { Head } from "../../engine/runtime/head.js";
import { encodeActivations } from "../../protocol/activations.js";
import { buildRoute, forwardTag } from "../../protocol/forwarding.js";
import { ErrorCode, MessageType, PROTOCOL_VERSION, encodeMessage } from "../../protocol/wire.js";
import { generate, type GenerationError, type LayerPipeline } from "../../client/generate.js";
import { LocalPipeline } from "../../client/localPipeline.js";
import { RemotePipeline, type RemoteSequence } from "../../client/remotePipeline.js";
import { ShardConnection } from "../../client/shardClient.js";
import { randomModel, scratchDir } from "../engine/helpers.js";
import { holdingRelay } from "../support/holdingRelay.js";
import { startServer, type RunningServer } from "./support.js";

const scratch = scratchDir();
let model: ModelDirectory;
let head: Head;
let expected: number[];
const PROMPT = [1, 9, 23, 4, 77, 31];
const TOKENS = 64;
const VARIANT = "0x" + "ab".repeat(32);
const H = (): number => model.config.hiddenSize;
const hidden = (rows: number): ReturnType<typeof encodeActivations> =>
  encodeActivations(Float32Array.from({ length: rows * H() }, (_, i) => Math.sin(i) / 4), rows, H(), "fp32");

beforeAll(async () => {
  model = randomModel(scratch.dir, "forwarding", { num_hidden_layers: 6, hidden_size: 64, max_position_embeddings: 512 });
  head = await Head.load(model);
  expected = (await generate(head, await LocalPipeline.load(model), PROMPT, { maxTokens: TOKENS, temperature: 0 })).generatedIds;
});
afterAll(() => scratch.cleanup());

async function startRoute(cuts: number[], forwarding = {}): Promise<RunningServer[]> {
  const bounds = [0, ...cuts, model.config.numLayers];
  const servers: RunningServer[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    servers.push(await startServer(model, bounds[i]!, bounds[i + 1]!, scratch.dir, { newPeersPerClientPerSecond: 10 }, VARIANT, undefined, forwarding));
  }
  return servers;
}

/** A pipeline that runs `before(step, sequence)` ahead of each step of `inner`'s sequence. */
function hooked(inner: RemotePipeline, before: (step: number, seq: RemoteSequence) => Promise<void>): LayerPipeline {
  return {
    openSequence: async () => {
      const seq = await inner.openSequence();
      let step = 0;
      return {
        forward: async (h) => {
          await before(step++, seq);
          return seq.forward(h);
        },
        close: () => seq.close(),
      };
    },
  };
}

describe("forwarding along a route", () => {
  it("refuses a forwarded step naming another client's session, which carries on unharmed", async () => {
    const servers = await startRoute([3]);
    try {
      const victim = await RemotePipeline.connect(servers.map((s) => s.server.url), model.config.numLayers);
      // the attacker holds real sessions of its own on both servers, so it has a forwarding key for server 2
      const attacker = await Promise.all(servers.map((s) => ShardConnection.connect(s.server.url)));
      const mine = [hexlify(randomBytes(32)), hexlify(randomBytes(32))];
      const myKeys = await Promise.all(attacker.map((c, i) => c.openSession(mine[i]!, 64)));
      const attempts: unknown[] = [];
      const result = await generate(
        head,
        hooked(victim, async (step, seq) => {
          if (step !== 1) return; // the victim's sessions are open and in use
          const theirs = seq.sessionIds[1]!;
          const url = servers[1]!.server.url;
          const at = (i: number) => ({ step: BigInt(i), position: i, outputEncoding: "fp32" as const });
          const tagged = (i: number) => ({ ...at(i), rows: 1 });
          const routes = [
            // the victim's session, tagged with the attacker's own key for that server
            [{ url, sessionId: theirs, tag: forwardTag(myKeys[1]!, { ...tagged(0), sessionId: theirs, route: [] }) }],
            // the victim's session with a made-up tag
            [{ url, sessionId: theirs, tag: hexlify(randomBytes(32)) }],
            // a session that does not exist
            buildRoute([{ url, sessionId: hexlify(randomBytes(32)), forwardKey: myKeys[1]! }], tagged(2)),
          ];
          // each attempt runs on the attacker's own first session (steps 0, 1, 2), then is forwarded
          for (const [i, route] of routes.entries()) {
            const sent = attacker[0]!.stepRouted({ sessionId: mine[0]!, ...at(i), input: hidden(1), route });
            attempts.push(await sent.then(() => "accepted", (err: unknown) => err));
          }
        }),
        PROMPT,
        { maxTokens: TOKENS, temperature: 0 },
      );
      expect(result.generatedIds).toEqual(expected);
      expect(attempts).toHaveLength(3);
      expect(attempts[0]).toMatchObject({ code: `SERVER_${ErrorCode.Forbidden}`, hop: 1 });
      expect((attempts[0] as Error).message).toContain("carries a tag its owner did not make");
      expect(attempts[1]).toMatchObject({ code: `SERVER_${ErrorCode.Forbidden}`, hop: 1 });
      expect(attempts[2]).toMatchObject({ code: `SERVER_${ErrorCode.UnknownSession}`, hop: 1 });
      expect((attempts[2] as Error).message).toContain("is not open on this server");
      victim.close();
      for (const c of attacker) c.close();
    } finally {
      for (const s of servers) await s.stop();
    }
  });

  it("a dead next hop gives the client an error naming it, and the servers keep serving others", async () => {
    const servers = await startRoute([2, 4]);
    try {
      const pipeline = await RemotePipeline.connect(servers.map((s) => s.server.url), model.config.numLayers);
      const dead = servers[1]!;
      const deadUrl = dead.server.url; // a stopped server no longer knows its port
      const failure = await generate(
        head,
        hooked(pipeline, async (step) => {
          if (step === 3) await dead.stop();
        }),
        PROMPT,
        { maxTokens: 8, temperature: 0 },
      ).then(
        () => undefined,
        (err: unknown) => (err as GenerationError).cause,
      );
      expect(failure).toMatchObject({ code: `SERVER_${ErrorCode.Upstream}`, hop: 1, details: { url: deadUrl } });
      // whether the first server had already seen its link close decides which of the two it reports
      const prefix = `server 2 of 3 on the route (${deadUrl}) failed step 3: `;
      expect([
        `${prefix}next hop ${deadUrl} is unreachable, or is not an eFed server`,
        `${prefix}connection to next hop ${deadUrl} closed (1001 server shutting down)`,
      ]).toContain((failure as Error).message.replace(/; step 3 of session 0x[0-9a-f]{64} was in flight$/, ""));
      pipeline.close();

      // the first and last servers serve a new client through a replacement for the middle one
      const replacement = await startServer(model, 2, 4, scratch.dir, {}, VARIANT);
      servers[1] = replacement;
      const again = await RemotePipeline.connect(servers.map((s) => s.server.url), model.config.numLayers);
      expect((await generate(head, again, PROMPT, { maxTokens: TOKENS, temperature: 0 })).generatedIds).toEqual(expected);
      again.close();
    } finally {
      for (const s of servers) await s.stop();
    }
  });

  it("a next hop that never answers, or is no eFed server, or serves the wrong layers, gets a named error; the server serves on", async () => {
    const [first] = await startRoute([3], { hopTimeoutMs: 300, connectTimeoutMs: 300 });
    const [, wrongLayers] = await startRoute([2]); // its second server starts at layer 2, not 3
    // a peer that says hello as the right server and then never answers a step
    const silent = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await new Promise<void>((resolve) => silent.once("listening", resolve));
    const hello = encodeMessage({
      type: MessageType.ServerInfo,
      requestId: 0,
      protocolVersion: PROTOCOL_VERSION,
      chainId: 31337n,
      server: first!.wallet.address,
      variantId: VARIANT,
      firstLayer: 3,
      lastLayer: 6,
      hiddenSize: H(),
      maxSessions: 8,
      maxSessionTokens: 64,
      maxStepTokens: 64,
      maxFrameBytes: 1 << 20,
      pricePerToken: 0n,
      commitments: ZeroAddress,
      challenge: "0x" + "11".repeat(32),
    });
    silent.on("connection", (ws) => ws.send(hello));
    // a plain HTTP server where a shard server should be
    const http = new WebSocketServer({ host: "127.0.0.1", port: 0, verifyClient: () => false });
    await new Promise<void>((resolve) => http.once("listening", resolve));
    const urlOf = (w: WebSocketServer): string => `ws://127.0.0.1:${(w.address() as { port: number }).port}`;
    try {
      const conn = await ShardConnection.connect(first!.server.url);
      const session = hexlify(randomBytes(32));
      await conn.openSession(session, 64);
      const stepTo = (step: bigint, url: string): Promise<unknown> =>
        conn
          .stepRouted({
            sessionId: session,
            step,
            position: Number(step),
            outputEncoding: "fp32",
            input: hidden(1),
            route: [{ url, sessionId: hexlify(randomBytes(32)), tag: hexlify(randomBytes(32)) }],
          })
          .then(
            () => "accepted",
            (err: unknown) => err,
          );
      const silentErr = await stepTo(0n, urlOf(silent));
      expect(silentErr).toMatchObject({ code: `SERVER_${ErrorCode.Upstream}`, hop: 1 });
      expect((silentErr as Error).message).toContain(`next hop ${urlOf(silent)} did not finish step 0 of session`);
      expect((silentErr as Error).message).toContain("within 300 ms");
      const httpErr = await stepTo(1n, urlOf(http));
      expect(httpErr).toMatchObject({ code: `SERVER_${ErrorCode.Upstream}`, hop: 1 });
      expect((httpErr as Error).message).toBe(`${first!.server.url} (1 hop down its route): next hop ${urlOf(http)} is unreachable, or is not an eFed server`);
      const wrongErr = await stepTo(2n, wrongLayers!.server.url);
      expect(wrongErr).toMatchObject({ code: `SERVER_${ErrorCode.BadRoute}`, hop: 0 });
      expect((wrongErr as Error).message).toContain(`next hop ${wrongLayers!.server.url} serves layers 2:6 of variant ${VARIANT}; this server's output goes to layer 3`);
      // the same session goes on with a plain step
      const plain = await conn.step({ sessionId: session, step: 3n, position: 3, outputEncoding: "fp32", input: hidden(1), route: [] });
      expect(plain.step).toBe(3n);
      conn.close();
    } finally {
      await first!.stop();
      await wrongLayers!.stop();
      for (const w of [silent, http]) {
        for (const c of w.clients) c.terminate();
        await new Promise<void>((resolve) => w.close(() => resolve()));
      }
    }
  });

  it("refuses a next hop on a host the operator does not allow, before running the step", async () => {
    const [first, second] = await startRoute([3], { allowedHosts: ["localhost"] });
    try {
      const conns = await Promise.all([first!, second!].map((s) => ShardConnection.connect(s.server.url)));
      const ids = [hexlify(randomBytes(32)), hexlify(randomBytes(32))];
      const keys = await Promise.all(conns.map((c, i) => c.openSession(ids[i]!, 64)));
      const step = { step: 0n, position: 0, outputEncoding: "fp32" as const };
      const route = buildRoute([{ url: second!.server.url, sessionId: ids[1]!, forwardKey: keys[1]! }], { ...step, rows: 1 });
      await expect(conns[0]!.stepRouted({ sessionId: ids[0]!, ...step, input: hidden(1), route })).rejects.toMatchObject({
        code: `SERVER_${ErrorCode.BadRoute}`,
        hop: 0,
        message: `${first!.server.url}: next hop host 127.0.0.1 is not one this server forwards to`,
      });
      // the session is unchanged: step 0 runs as a plain step
      expect((await conns[0]!.step({ sessionId: ids[0]!, ...step, input: hidden(1), route: [] })).step).toBe(0n);
      for (const c of conns) c.close();
    } finally {
      await first!.stop();
      await second!.stop();
    }
  });

  it("graceful stop finishes a forwarded step in flight (its answer still on its way back) before closing", async () => {
    const [first, second] = await startRoute([3]);
    const relay = await holdingRelay(second!.server.url);
    let stopped: Promise<void> | undefined;
    try {
      const conns = await Promise.all([first!, second!].map((s) => ShardConnection.connect(s.server.url)));
      const ids = [hexlify(randomBytes(32)), hexlify(randomBytes(32))];
      const keys = await Promise.all(conns.map((c, i) => c.openSession(ids[i]!, 64)));
      const step = { step: 0n, position: 0, outputEncoding: "fp32" as const };
      const route = buildRoute([{ url: relay.url, sessionId: ids[1]!, forwardKey: keys[1]! }], { ...step, rows: 1 });
      const output = conns[1]!.awaitResult(ids[1]!, 0n);
      const done = conns[0]!.stepRouted({ sessionId: ids[0]!, ...step, input: hidden(1), route });
      // the last server's output reached the client; the first server still waits for its answer
      expect((await output.result).output.rows).toBe(1);
      while (relay.held() === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      expect(first!.server.inFlightCount).toBe(1);
      stopped = first!.stop();
      // new work is refused while stopping
      await expect(conns[0]!.openSession(hexlify(randomBytes(32)), 8)).rejects.toMatchObject({ code: `SERVER_${ErrorCode.ShuttingDown}` });
      relay.release();
      await expect(done).resolves.toBeUndefined();
      await stopped;
      expect(first!.server.inFlightCount).toBe(0);
      for (const c of conns) c.close();
    } finally {
      relay.release();
      await (stopped ?? first!.stop());
      await relay.close();
      await second!.stop();
    }
  });
});
