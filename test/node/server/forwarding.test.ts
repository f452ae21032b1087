import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Wallet, hexlify, randomBytes, type SigningKey } from "ethers";
import { WebSocket, WebSocketServer } from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ModelDirectory } from "../../../engine/model/modelDir.js";
import { Head } from "../../../engine/runtime/head.js";
import { encodeActivations } from "../../../protocol/activations.js";
import { buildRoute, forwardTag } from "../../../protocol/forwarding.js";
import { ErrorCode, MessageType, encodeMessage, type Step } from "../../../protocol/wire.js";
import { helloTranscript, newEphemeralKey, signTranscript } from "../../../protocol/peerAuth.js";
import { PeerLink } from "../../../node/server/peerLink.js";
import type { ForwardingOptions } from "../../../node/server/forwarder.js";
import { generate, type GenerationError, type LayerPipeline } from "../../../client/generate.js";
import { LocalPipeline } from "../../../client/localPipeline.js";
import { RemotePipeline, type RemoteSequence } from "../../../client/remotePipeline.js";
import { ShardConnection } from "../../../client/shardClient.js";
import { randomModel, scratchDir } from "../../engine/helpers.js";
import { silentPeer } from "../../support/fakeShardServer.js";
import { holdingRelay } from "../../support/holdingRelay.js";
import { RawPeer } from "../../support/rawPeer.js";
import { startServer, type RunningServer } from "../support.js";

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

/** Servers for the layer ranges between `cuts`, on loopback: forwarding to private addresses allowed unless `forwarding` says otherwise. */
async function startRoute(cuts: number[], forwarding: Partial<ForwardingOptions> = {}, tls?: { certPem: string; keyPem: string }): Promise<RunningServer[]> {
  const bounds = [0, ...cuts, model.config.numLayers];
  const servers: RunningServer[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const options = { allowPrivateAddresses: true, ...forwarding };
    const limits = { newPeersPerClientPerSecond: 10 };
    servers.push(await startServer(model, bounds[i]!, bounds[i + 1]!, scratch.dir, limits, VARIANT, undefined, options, tls === undefined ? {} : { tls }));
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
        compute: async (h) => {
          await before(step++, seq);
          return seq.compute(h);
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
          const [first, second] = servers.map((s) => s.wallet.address);
          const routes = [
            // the victim's session, tagged with the attacker's own key for that server
            [{ url, sessionId: theirs, tag: forwardTag(myKeys[1]!, { ...tagged(0), sessionId: theirs, previous: first!, route: [] }) }],
            // the victim's session with a made-up tag
            [{ url, sessionId: theirs, tag: hexlify(randomBytes(32)) }],
            // a session that does not exist
            buildRoute(first!, [{ url, sessionId: hexlify(randomBytes(32)), forwardKey: myKeys[1]!, server: second! }], tagged(2)),
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
      expect((attempts[0] as Error).message).toContain(`carries a tag its owner did not make for delivery by ${servers[0]!.wallet.address}`);
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
    const servers = await startRoute([2, 4], { connectTimeoutMs: 500 });
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
        `${prefix}next hop ${deadUrl} is unreachable, is not an eFed server, or is not one this server forwards to`,
        `${prefix}next hop: connection to ${deadUrl} closed (1001 server shutting down)`,
      ]).toContain((failure as Error).message.replace(/; step 3 of session 0x[0-9a-f]{64} was in flight$/, ""));
      pipeline.close();

      // the first and last servers serve a new client through a replacement for the middle one
      const replacement = await startServer(model, 2, 4, scratch.dir, {}, VARIANT, undefined, { allowPrivateAddresses: true });
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
    // a peer that authenticates as a server for the right layers and then never answers a step
    const silent = await silentPeer({ info: { variantId: VARIANT, firstLayer: 3, lastLayer: 6, hiddenSize: H(), maxFrameBytes: 1 << 20 } });
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
      const silentErr = await stepTo(0n, silent.url);
      expect(silentErr).toMatchObject({ code: `SERVER_${ErrorCode.Upstream}`, hop: 1 });
      expect((silentErr as Error).message).toContain(`next hop ${silent.url} did not finish step 0 of session`);
      expect((silentErr as Error).message).toContain("within 300 ms");
      const httpErr = await stepTo(1n, urlOf(http));
      expect(httpErr).toMatchObject({ code: `SERVER_${ErrorCode.Upstream}`, hop: 1 });
      expect((httpErr as Error).message).toBe(
        `${first!.server.url} (1 hop down its route): next hop ${urlOf(http)} is unreachable, is not an eFed server, or is not one this server forwards to`,
      );
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
      await silent.close();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    }
  });

  it("refuses a next hop on a host the operator does not allow, before running the step", async () => {
    const [first, second] = await startRoute([3], { allowedHosts: ["localhost"] });
    try {
      const conns = await Promise.all([first!, second!].map((s) => ShardConnection.connect(s.server.url)));
      const ids = [hexlify(randomBytes(32)), hexlify(randomBytes(32))];
      const keys = await Promise.all(conns.map((c, i) => c.openSession(ids[i]!, 64)));
      const step = { step: 0n, position: 0, outputEncoding: "fp32" as const };
      const route = buildRoute(first!.wallet.address, [{ url: second!.server.url, sessionId: ids[1]!, forwardKey: keys[1]!, server: second!.wallet.address }], { ...step, rows: 1 });
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
      const route = buildRoute(first!.wallet.address, [{ url: relay.url, sessionId: ids[1]!, forwardKey: keys[1]!, server: second!.wallet.address }], { ...step, rows: 1 });
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

  it("by default forwards to no loopback or private address, with the one connect-failure message", async () => {
    const [first, second] = await startRoute([3], { allowPrivateAddresses: false, connectTimeoutMs: 300 });
    try {
      const conns = await Promise.all([first!, second!].map((s) => ShardConnection.connect(s.server.url)));
      const ids = [hexlify(randomBytes(32)), hexlify(randomBytes(32))];
      const keys = await Promise.all(conns.map((c, i) => c.openSession(ids[i]!, 64)));
      const step = { step: 0n, position: 0, outputEncoding: "fp32" as const };
      const url = second!.server.url;
      const route = buildRoute(first!.wallet.address, [{ url, sessionId: ids[1]!, forwardKey: keys[1]!, server: second!.wallet.address }], { ...step, rows: 1 });
      await expect(conns[0]!.stepRouted({ sessionId: ids[0]!, ...step, input: hidden(1), route })).rejects.toMatchObject({
        code: `SERVER_${ErrorCode.Upstream}`,
        hop: 1,
        message: `${first!.server.url} (1 hop down its route): next hop ${url} is unreachable, is not an eFed server, or is not one this server forwards to`,
      });
      for (const c of conns) c.close();
    } finally {
      await first!.stop();
      await second!.stop();
    }
  });
});

/** A client's two sessions on a two-server route, and the route of step 0 through `via` (default: the second server). */
async function routeOfTwo(servers: RunningServer[], via?: string) {
  const conns = await Promise.all(servers.map((s) => ShardConnection.connect(s.server.url)));
  const ids = [hexlify(randomBytes(32)), hexlify(randomBytes(32))];
  const keys = await Promise.all(conns.map((c, i) => c.openSession(ids[i]!, 64)));
  const step = { step: 0n, position: 0, outputEncoding: "fp32" as const };
  const [first, second] = servers.map((s) => s.wallet.address);
  const url = via ?? servers[1]!.server.url;
  const route = buildRoute(first!, [{ url, sessionId: ids[1]!, forwardKey: keys[1]!, server: second! }], { ...step, rows: 1 });
  return { conns, ids, step, route, close: () => conns.forEach((c) => c.close()) };
}

/**
 * A relay between a server and its next hop that passes everything, except that it flips one bit
 * in every frame of type `alter` going downstream: in a Step, of the activations (a man in the
 * middle substituting input); in a PeerHello, of the ephemeral key (one trying to learn the link key).
 */
async function tamperingRelay(
  target: string,
  alter: typeof MessageType.Step | typeof MessageType.PeerHello = MessageType.Step,
): Promise<{ url: string; tampered: () => number; close: () => Promise<void> }> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise<void>((resolve) => wss.once("listening", resolve));
  let tampered = 0;
  wss.on("connection", (down) => {
    const up = new WebSocket(target);
    const queued: Buffer[] = [];
    up.on("open", () => queued.splice(0).forEach((f) => up.send(f)));
    up.on("message", (data) => down.send(data as Buffer));
    up.on("close", () => down.close());
    up.on("error", () => down.terminate());
    down.on("error", () => up.terminate());
    down.on("message", (data) => {
      const frame = Buffer.from(data as Buffer);
      if (frame[0] === alter) {
        // Step: inside the payload, before the 32-byte MAC; PeerHello: in the key after type, request id and address
        const at = alter === MessageType.Step ? frame.byteLength - 40 : 1 + 4 + 20;
        frame[at] = frame[at]! ^ 0x01;
        tampered++;
      }
      if (up.readyState === up.OPEN) up.send(frame);
      else queued.push(frame);
    });
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}`,
    tampered: () => tampered,
    close: () => {
      for (const c of wss.clients) c.terminate();
      return new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

describe("forwarded steps come only from the previous hop, unaltered", () => {
  it("refuses a tag replayed from another server's link, and the owner's step then runs", async () => {
    const servers = await startRoute([3]);
    const r = await routeOfTwo(servers);
    // a server the route does not name (it saw the tag: a relay, a hop of another route) delivers the step itself
    const intruder = Wallet.createRandom();
    const link = await PeerLink.connect(
      servers[1]!.server.url,
      { variantId: VARIANT, firstLayer: 3 },
      { signingKey: intruder.signingKey, address: intruder.address },
      { connectTimeoutMs: 2_000, heartbeatIntervalMs: 1_000, heartbeatTimeoutMs: 5_000 },
      () => undefined,
    );
    try {
      const hop = r.route[0]!;
      const replayed = { sessionId: hop.sessionId, tag: hop.tag, ...r.step, input: hidden(1), route: [] };
      await expect(link.forward(replayed, 5_000)).rejects.toMatchObject({
        wireCode: ErrorCode.Forbidden,
        hop: 1,
        message: `${servers[1]!.server.url}: forwarded step 0 for session ${hop.sessionId} carries a tag its owner did not make for delivery by ${intruder.address}`,
      });
      // the session is untouched: the owner's step 0 runs through the route it chose
      const output = r.conns[1]!.awaitResult(r.ids[1]!, 0n);
      await r.conns[0]!.stepRouted({ sessionId: r.ids[0]!, ...r.step, input: hidden(1), route: r.route });
      expect((await output.result).output.rows).toBe(1);
    } finally {
      link.close();
      r.close();
      for (const s of servers) await s.stop();
    }
  });

  it("refuses input altered by a relay between two servers, and the link is dropped", async () => {
    const servers = await startRoute([3]);
    const relay = await tamperingRelay(servers[1]!.server.url);
    const r = await routeOfTwo(servers, relay.url);
    try {
      const err = await r.conns[0]!.stepRouted({ sessionId: r.ids[0]!, ...r.step, input: hidden(1), route: r.route }).then(
        () => "accepted",
        (e: unknown) => e,
      );
      expect(relay.tampered()).toBe(1);
      expect(err).toMatchObject({
        code: `SERVER_${ErrorCode.BadLinkMac}`,
        hop: 1,
        message: `${servers[0]!.server.url} (1 hop down its route): ${relay.url}: frame 0 on an authenticated link fails its MAC: altered, reordered or replayed on the way`,
      });
      // the second server ran nothing: the session still expects step 0 (sent directly by its owner)
      const plain = await r.conns[1]!.step({ sessionId: r.ids[1]!, ...r.step, input: hidden(1), route: [] });
      expect(plain.step).toBe(0n);
    } finally {
      r.close();
      await relay.close();
      for (const s of servers) await s.stop();
    }
  });

  it("gets no link through a relay that alters the handshake's key: the step fails with the one connect-failure message", async () => {
    const servers = await startRoute([3], { connectTimeoutMs: 300 });
    const relay = await tamperingRelay(servers[1]!.server.url, MessageType.PeerHello);
    const r = await routeOfTwo(servers, relay.url);
    try {
      await expect(r.conns[0]!.stepRouted({ sessionId: r.ids[0]!, ...r.step, input: hidden(1), route: r.route })).rejects.toMatchObject({
        code: `SERVER_${ErrorCode.Upstream}`,
        hop: 1,
        message: `${servers[0]!.server.url} (1 hop down its route): next hop ${relay.url} is unreachable, is not an eFed server, or is not one this server forwards to`,
      });
      expect(relay.tampered()).toBe(1);
    } finally {
      r.close();
      await relay.close();
      for (const s of servers) await s.stop();
    }
  });

  it("refuses a forwarded step on a connection that never authenticated, and a PeerHello not signed over this connection's challenge", async () => {
    const servers = await startRoute([3]);
    const r = await routeOfTwo(servers);
    const hop = r.route[0]!;
    const forwarded: Step = { type: MessageType.Step, requestId: 1, sessionId: hop.sessionId, tag: hop.tag, ...r.step, input: hidden(1), route: [] };
    const raw = await RawPeer.open(servers[1]!.server.url);
    const other = await RawPeer.open(servers[1]!.server.url);
    try {
      expect(await raw.send(encodeMessage(forwarded))).toMatchObject({
        type: MessageType.Error,
        requestId: 1,
        code: ErrorCode.PeerUnauthenticated,
        message: "a forwarded step came on a connection that has not authenticated as a server (PeerHello)",
      });
      // claiming to be the first server: signed by another key, or by the first server's key over another connection's challenge
      const first = servers[0]!.wallet;
      const ephemeralKey = newEphemeralKey().publicKey;
      const helloOver = (challenge: string, key: SigningKey) =>
        ({
          type: MessageType.PeerHello,
          requestId: 2,
          server: first.address,
          ephemeralKey,
          signature: signTranscript(key, helloTranscript({ challenge, accepting: servers[1]!.wallet.address, connecting: first.address, connectingKey: ephemeralKey })),
        }) as const;
      const refusal = { type: MessageType.Error, requestId: 2, code: ErrorCode.PeerUnauthenticated, message: `PeerHello is not signed by ${first.address} over this connection's challenge` };
      // a failed PeerHello is answered and its connection closed: one attempt per connection
      const third = await RawPeer.open(servers[1]!.server.url);
      expect(await raw.send(encodeMessage(helloOver(raw.info.challenge, Wallet.createRandom().signingKey)))).toMatchObject(refusal);
      await raw.whenClosed();
      expect(raw.closeReason).toBe("authentication failed");
      expect(await third.send(encodeMessage(helloOver(other.info.challenge, first.signingKey)))).toMatchObject(refusal);
      await third.whenClosed();
      expect(await other.send(encodeMessage({ ...forwarded, requestId: 3 }))).toMatchObject({ type: MessageType.Error, requestId: 3, code: ErrorCode.PeerUnauthenticated });
      // the session is untouched
      expect((await r.conns[1]!.step({ sessionId: r.ids[1]!, ...r.step, input: hidden(1), route: [] })).step).toBe(0n);
    } finally {
      raw.close();
      other.close();
      r.close();
      for (const s of servers) await s.stop();
    }
  });
});

describe("wss:// for clients and hops", () => {
  it("runs a forwarded route over TLS with a self-signed certificate the client and the servers are told to trust", async () => {
    const dir = mkdtempSync(join(tmpdir(), "efed-tls-"));
    const certFile = join(dir, "cert.pem");
    const keyFile = join(dir, "key.pem");
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
      "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", keyFile, "-out", certFile,
    ], { stdio: "ignore" });
    const tls = { certPem: readFileSync(certFile, "utf8"), keyPem: readFileSync(keyFile, "utf8") };
    rmSync(dir, { recursive: true, force: true });
    const servers = await startRoute([3], { ca: tls.certPem }, tls);
    try {
      const urls = servers.map((s) => s.server.url);
      expect(urls.every((u) => u.startsWith("wss://127.0.0.1:"))).toBe(true);
      // without the certificate, a client refuses the server
      await expect(ShardConnection.connect(urls[0]!)).rejects.toMatchObject({ code: "CONNECT_FAILED", message: `cannot connect to ${urls[0]}: self-signed certificate` });
      const pipeline = await RemotePipeline.connect(urls, model.config.numLayers, { ca: tls.certPem });
      expect(pipeline.forwarding).toBe(true);
      const result = await generate(head, pipeline, PROMPT, { maxTokens: 8, temperature: 0 });
      expect(result.generatedIds).toEqual(expected.slice(0, 8));
      pipeline.close();
    } finally {
      for (const s of servers) await s.stop();
    }
  });
});
