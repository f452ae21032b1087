import { Wallet, hexlify, randomBytes } from "ethers";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ModelDirectory } from "../../../engine/model/modelDir.js";
import { Head } from "../../../engine/runtime/head.js";
import { encodeActivations } from "../../../protocol/activations.js";
import { ownerProof, sessionStepTarget, signAuth } from "../../../protocol/fetchAuth.js";
import { receiptLeaf } from "../../../protocol/receipt.js";
import { ErrorCode, MessageType, encodeMessage, maxFrameBytesFor, type Message } from "../../../protocol/wire.js";
import { generate } from "../../../client/generate.js";
import { LocalPipeline } from "../../../client/localPipeline.js";
import { RemotePipeline } from "../../../client/remotePipeline.js";
import { ShardConnection } from "../../../client/shardClient.js";
import { buildRoute } from "../../../protocol/forwarding.js";
import { holdingRelay } from "../../support/holdingRelay.js";
import { randomModel, scratchDir } from "../../engine/helpers.js";
import { RawPeer } from "../../support/rawPeer.js";
import { startServer, type RunningServer } from "../support.js";

/**
 * Attacks on one shard server from a hostile peer, each beside an honest client: the honest client
 * is served with unchanged tokens, the attacker gets the documented error or a closed connection,
 * the server stays up. The attacker connects from 127.0.0.2, the honest client from 127.0.0.1, so
 * per-address limits tell them apart as they would two hosts.
 */
const scratch = scratchDir();
const ATTACKER = { localAddress: "127.0.0.2" };
let model: ModelDirectory;
let head: Head;
let expected: number[];
const H = (): number => model.config.hiddenSize;
const sid = (): string => hexlify(randomBytes(32));
const servers: RunningServer[] = [];
const peers: RawPeer[] = [];

beforeAll(async () => {
  model = randomModel(scratch.dir, "hostile", { max_position_embeddings: 96 });
  head = await Head.load(model);
  expected = (await generate(head, await LocalPipeline.load(model), [3, 1, 4], { maxTokens: 12, temperature: 0 })).generatedIds;
});
afterEach(async () => {
  for (const p of peers.splice(0)) p.close();
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});
afterAll(() => scratch.cleanup());

async function serve(limits: Parameters<typeof startServer>[4] = {}, extra: Parameters<typeof startServer>[8] = {}): Promise<RunningServer> {
  const s = await startServer(model, 0, model.config.numLayers, scratch.dir, limits, undefined, undefined, {}, extra);
  servers.push(s);
  return s;
}

async function peer(url: string, options: { localAddress?: string } = {}): Promise<RawPeer> {
  const p = await RawPeer.open(url, options);
  peers.push(p);
  return p;
}

/** The honest client's generation through `url`: must equal the in-process run. */
async function honestTokens(url: string): Promise<number[]> {
  const pipeline = await RemotePipeline.connect([url], model.config.numLayers, { maxLength: 32 });
  try {
    return (await generate(head, pipeline, [3, 1, 4], { maxTokens: 12, temperature: 0 })).generatedIds;
  } finally {
    pipeline.close();
  }
}

const open = (sessionId: string, maxLength = 32, requestId = 1): Uint8Array =>
  encodeMessage({ type: MessageType.OpenSession, requestId, sessionId, maxLength });
const step = (sessionId: string, stepIndex: bigint, position: number, rows = 1, requestId = 2): Uint8Array =>
  encodeMessage({
    type: MessageType.Step,
    requestId,
    sessionId,
    step: stepIndex,
    position,
    outputEncoding: "fp32",
    input: encodeActivations(new Float32Array(rows * H()).fill(0.25), rows, H(), "fp32"),
    route: [],
  });

function expectError(m: Message | "closed", code: number, text: string): void {
  expect(m).toMatchObject({ type: MessageType.Error, code });
  expect((m as { message: string }).message).toContain(text);
}

describe("a server under attack", () => {
  it("announces and accepts only what its shard holds: a session longer than the context is refused at open", async () => {
    const s = await serve({ maxSessionTokens: 2048 });
    const p = await peer(s.server.url, ATTACKER);
    expect(p.info.maxSessionTokens).toBe(96);
    expect(p.info.maxFrameBytes).toBe(maxFrameBytesFor(H(), 96));
    expectError(await p.send(open(sid(), 2048)), ErrorCode.SessionTooLong, "session length 2048 is outside 1..96");
    expect(await honestTokens(s.server.url)).toEqual(expected);
  });

  it("runs one step of a session at a time: pipelined steps claiming the same position are refused, the cache does not grow", async () => {
    const s = await serve();
    const p = await peer(s.server.url, ATTACKER);
    const id = sid();
    expect(await p.send(open(id))).toMatchObject({ type: MessageType.SessionOpened });
    for (let i = 0; i < 10; i++) p.push(step(id, 0n, 0, 4, 100 + i));
    const replies: Message[] = [];
    while (replies.length < 11) {
      // ten answers (one result, nine refusals) and the admitted step's receipt
      const m = await p.next();
      if (m === "closed") throw new Error("server closed the connection");
      replies.push(m);
    }
    const results = replies.filter((m) => m.type === MessageType.StepResult);
    const errors = replies.filter((m) => m.type === MessageType.Error);
    expect(replies.filter((m) => m.type === MessageType.StepReceipt)).toHaveLength(1);
    expect(results).toHaveLength(1);
    expect(errors).toHaveLength(9);
    for (const e of errors) expect([ErrorCode.Busy, ErrorCode.BadPosition]).toContain((e as { code: number }).code);
    // the one admitted step holds 4 tokens: the next step must start at position 4
    expectError(await p.send(step(id, 1n, 0)), ErrorCode.BadPosition, "is at position 4, step says 0");
    expect(await honestTokens(s.server.url)).toEqual(expected);
  });

  it("limits sessions per connection and per address; an honest client from another address still opens one", async () => {
    const s = await serve({ maxSessionsPerConnection: 3, maxSessionsPerAddress: 5 });
    const a = await peer(s.server.url, ATTACKER);
    for (let i = 0; i < 3; i++) expect(await a.send(open(sid()))).toMatchObject({ type: MessageType.SessionOpened });
    expectError(await a.send(open(sid())), ErrorCode.TooManySessions, "this connection holds its maximum of 3 sessions");
    const b = await peer(s.server.url, ATTACKER);
    for (let i = 0; i < 2; i++) expect(await b.send(open(sid()))).toMatchObject({ type: MessageType.SessionOpened });
    expectError(await b.send(open(sid())), ErrorCode.TooManySessions, "address 127.0.0.2 holds its maximum of 5 sessions");
    expect(await honestTokens(s.server.url)).toEqual(expected);
  });

  it("limits connections per address and in all; refused peers get a clear error and a close", async () => {
    const s = await serve({ maxConnectionsPerAddress: 3, maxConnections: 5 });
    for (let i = 0; i < 3; i++) await peer(s.server.url, ATTACKER);
    const refused = await peer(s.server.url, ATTACKER);
    expectError(await refused.next(), ErrorCode.TooManyConnections, "address 127.0.0.2 holds its maximum of 3 connections");
    await refused.whenClosed();
    expect(refused.closeCode).toBe(1013);
    await peer(s.server.url, { localAddress: "127.0.0.3" });
    expect(s.server.connectionCount).toBe(4); // the refused one is not counted
    // 4 of 5 connections are taken: the honest client's one connection still fits
    expect(await honestTokens(s.server.url)).toEqual(expected);
  });

  it("at the connection cap, the connection idle longest makes room; connections with sessions are never closed for it", async () => {
    const s = await serve({ maxConnections: 3 });
    const idle = await peer(s.server.url, { localAddress: "127.0.0.4" });
    const busy = await peer(s.server.url, ATTACKER);
    const other = await peer(s.server.url, { localAddress: "127.0.0.5" });
    for (const p of [busy, other]) expect(await p.send(open(sid()))).toMatchObject({ type: MessageType.SessionOpened });
    const newcomer = await peer(s.server.url, { localAddress: "127.0.0.6" });
    expect(newcomer.info.server).toBe(s.wallet.address); // admitted
    await idle.whenClosed();
    expect([idle.closeCode, idle.closeReason]).toEqual([1013, "server full: idle connection closed to make room"]);
    // with every connection holding a session, a newcomer is refused
    expect(await newcomer.send(open(sid()))).toMatchObject({ type: MessageType.SessionOpened });
    const refused = await peer(s.server.url, { localAddress: "127.0.0.7" });
    expectError(await refused.next(), ErrorCode.TooManyConnections, "server holds its maximum of 3 connections, all of them busy");
    expect([busy.closed, other.closed, newcomer.closed]).toEqual([false, false, false]);
  });

  it("closes connections that open no session within the idle time", async () => {
    const s = await serve({ connectionIdleMs: 200 });
    const idle = await peer(s.server.url, ATTACKER);
    const busy = await peer(s.server.url, ATTACKER);
    expect(await busy.send(open(sid()))).toMatchObject({ type: MessageType.SessionOpened });
    await idle.whenClosed();
    expect([idle.closeCode, idle.closeReason]).toEqual([1000, "idle for 200 ms with no session"]);
    expect(busy.closed).toBe(false); // it holds a session
  });

  it("closes a connection that sends a frame larger than the largest valid message", async () => {
    const s = await serve({ maxStepTokens: 64 });
    const p = await peer(s.server.url, ATTACKER);
    expect(await p.send(new Uint8Array(p.info.maxFrameBytes + 1))).toBe("closed");
    expect(p.closeCode).toBe(1009);
    expect(await honestTokens(s.server.url)).toEqual(expected);
  });

  it("answers FetchStep only to the session's owner, with a proof made over this connection's challenge", async () => {
    const s = await serve({}, { signEvery: 1 }); // each step is stored before its receipt leaves
    const owner = await peer(s.server.url);
    const id = sid();
    const opened = await owner.send(open(id));
    expect(opened).toMatchObject({ type: MessageType.SessionOpened });
    const key = (opened as { forwardKey: string }).forwardKey;
    expect(await owner.send(step(id, 0n, 0, 3))).toMatchObject({ type: MessageType.StepResult });
    expect(await owner.next()).toMatchObject({ type: MessageType.StepReceipt });
    const stored = s.store.uncommitted(10)[0]!;
    const leaf = receiptLeaf(stored.receipt);

    const stranger = await peer(s.server.url, ATTACKER);
    const fetch = (p: RawPeer, proof?: string): Promise<Message | "closed"> =>
      p.send(encodeMessage({ type: MessageType.FetchStep, requestId: 9, leaf, ...(proof === undefined ? {} : { ownerProof: proof }) }));
    expectError(await fetch(stranger), ErrorCode.Forbidden, "needs the session owner's proof");
    // a proof seen on the owner's connection is worthless on another one
    // a wrong proof gets the answer of a step this server does not hold: a stranger learns nothing
    const notHeld = `no stored step has receipt leaf ${leaf} that this connection may fetch`;
    expectError(await fetch(stranger, ownerProof(key, owner.info.challenge, leaf)), ErrorCode.NotFound, notHeld);
    expectError(await fetch(stranger, ownerProof(hexlify(randomBytes(32)), stranger.info.challenge, leaf)), ErrorCode.NotFound, notHeld);
    const unknown = sid();
    expectError(await fetch(stranger, ownerProof(key, stranger.info.challenge, unknown)).then((m) => m), ErrorCode.NotFound, "that this connection may fetch");
    const got = await fetch(owner, ownerProof(key, owner.info.challenge, leaf));
    expect(got).toMatchObject({ type: MessageType.StoredStep, receipt: stored.receipt });
    // by session and step, with a proof over that target (a proof over the leaf does not do)
    const bySession = (p: RawPeer, proof?: string): Promise<Message | "closed"> =>
      p.send(encodeMessage({ type: MessageType.FetchSessionStep, requestId: 10, sessionId: id, step: 0n, ...(proof === undefined ? {} : { ownerProof: proof }) }));
    expectError(await bySession(stranger), ErrorCode.Forbidden, "needs the session owner's proof");
    expectError(await bySession(owner, ownerProof(key, owner.info.challenge, leaf)), ErrorCode.NotFound, `no stored step has step 0 of session ${id} that this connection may fetch`);
    expect(await bySession(owner, ownerProof(key, owner.info.challenge, sessionStepTarget(id, 0n)))).toMatchObject({
      type: MessageType.StoredStep,
      receipt: stored.receipt,
    });
    // the session's key survives its close: the owner can still fetch what it paid for
    expect(await owner.send(encodeMessage({ type: MessageType.CloseSession, requestId: 3, sessionId: id }))).toMatchObject({ type: MessageType.SessionClosed });
    expect(await fetch(owner, ownerProof(key, owner.info.challenge, leaf))).toMatchObject({ type: MessageType.StoredStep });
    // and a session id is never reissued, so nobody else can get its key
    expectError(await stranger.send(open(id)), ErrorCode.SessionExists, `session id ${id} was used before on this server`);
  });

  it("lets a registered verifier fetch after signing the connection's challenge; refuses others", async () => {
    const verifier = Wallet.createRandom();
    const impostor = Wallet.createRandom();
    const s = await serve({}, { isVerifier: (address) => Promise.resolve(address === verifier.address), signEvery: 1 });
    const owner = await peer(s.server.url);
    const id = sid();
    await owner.send(open(id));
    await owner.send(step(id, 0n, 0, 2));
    expect(await owner.next()).toMatchObject({ type: MessageType.StepReceipt });
    const leaf = receiptLeaf(s.store.uncommitted(10)[0]!.receipt);

    const auth = (w: { address: string; signingKey: Wallet["signingKey"] }, challenge: string, requestId = 4): Uint8Array =>
      encodeMessage({ type: MessageType.Authenticate, requestId, address: w.address, signature: signAuth(w.signingKey, 31337n, s.wallet.address, challenge) });
    // each failed attempt is answered, then the connection is closed: one attempt per connection
    const first = await peer(s.server.url, ATTACKER);
    expectError(await first.send(auth(impostor, first.info.challenge)), ErrorCode.Forbidden, `${impostor.address} is not a registered verifier`);
    await first.whenClosed();
    expect([first.closeCode, first.closeReason]).toEqual([1008, "authentication failed"]);
    // a signature over another connection's challenge is refused
    const second = await peer(s.server.url, ATTACKER);
    expectError(await second.send(auth(verifier, owner.info.challenge)), ErrorCode.Forbidden, `the signature is not ${verifier.address}'s over this connection's challenge`);
    await second.whenClosed();
    const v = await peer(s.server.url, ATTACKER);
    expect(await v.send(auth(verifier, v.info.challenge))).toMatchObject({ type: MessageType.Authenticated, address: verifier.address });
    expect(await v.send(encodeMessage({ type: MessageType.FetchStep, requestId: 5, leaf }))).toMatchObject({ type: MessageType.StoredStep });
    // a posted batch's receipts are listed to the verifier (what it samples from), and to nobody else
    const stored = s.store.uncommitted(10)[0]!;
    s.store.markCommitted(7, hexlify(randomBytes(32)), [leaf], Date.now());
    expect(await v.send(encodeMessage({ type: MessageType.FetchBatch, requestId: 8, batchId: 7n, offset: 0, limit: 10 }))).toEqual({
      type: MessageType.BatchReceipts,
      requestId: 8,
      batchId: 7n,
      total: 1,
      offset: 0,
      receipts: [stored.receipt],
    });
    expectError(
      await v.send(encodeMessage({ type: MessageType.FetchBatch, requestId: 9, batchId: 8n, offset: 0, limit: 10 })),
      ErrorCode.NotFound,
      "no posted batch 8 in this server's store",
    );
    expectError(
      await owner.send(encodeMessage({ type: MessageType.FetchBatch, requestId: 9, batchId: 7n, offset: 0, limit: 10 })),
      ErrorCode.Forbidden,
      "a batch's receipts are listed only to a connection authenticated as a registered verifier",
    );
    expect(await v.send(encodeMessage({ type: MessageType.FetchSessionStep, requestId: 6, sessionId: id, step: 0n }))).toMatchObject({ type: MessageType.StoredStep });
    expectError(
      await v.send(encodeMessage({ type: MessageType.FetchSessionStep, requestId: 7, sessionId: id, step: 1n })),
      ErrorCode.NotFound,
      `no stored step has step 1 of session ${id}`,
    );
  });

  it("a standalone server has no verifiers: Authenticate is refused", async () => {
    const s = await serve();
    const p = await peer(s.server.url, ATTACKER);
    const w = Wallet.createRandom();
    const m = await p.send(
      encodeMessage({ type: MessageType.Authenticate, requestId: 4, address: w.address, signature: signAuth(w.signingKey, 31337n, s.wallet.address, p.info.challenge) }),
    );
    expectError(m, ErrorCode.Forbidden, "this server runs without a chain");
  });

  it("rate-limits fetches per connection", async () => {
    const s = await serve({ fetchesPerSecond: 1, fetchBurst: 3 });
    const p = await peer(s.server.url, ATTACKER);
    const fetch = encodeMessage({ type: MessageType.FetchStep, requestId: 7, leaf: sid(), ownerProof: sid() });
    for (let i = 0; i < 3; i++) expectError(await p.send(fetch), ErrorCode.NotFound, "no stored step has receipt leaf");
    expectError(await p.send(fetch), ErrorCode.RateLimited, "at most 1 fetches per second per connection (burst 3)");
  });

  it("stops reading a connection that pipelines requests and never reads the replies; the honest client is served", async () => {
    const s = await serve({ maxRequestsInFlightPerConnection: 4, maxBufferedBytesPerConnection: 64 * 1024 }, { signEvery: 1 });
    const p = await peer(s.server.url, ATTACKER);
    const id = sid();
    const opened = (await p.send(open(id, 96))) as { forwardKey: string };
    await p.send(step(id, 0n, 0, 64));
    await p.next(); // its receipt
    const leaf = receiptLeaf(s.store.uncommitted(10)[0]!.receipt);
    const fetch = encodeMessage({ type: MessageType.FetchStep, requestId: 8, leaf, ownerProof: ownerProof(opened.forwardKey, p.info.challenge, leaf) });
    p.ws.pause(); // the attacker stops reading
    const rssBefore = process.memoryUsage().rss;
    for (let i = 0; i < 2000; i++) p.push(fetch); // each reply is 64 KiB: 128 MiB if the server kept answering
    expect(await honestTokens(s.server.url)).toEqual(expected);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(64 * 1024 * 1024);
  });

  it("stops within its shutdown deadline even when a forwarded step's next hop never answers", async () => {
    const first = await startServer(model, 0, 2, scratch.dir, { shutdownDeadlineMs: 300 }, undefined, undefined, { hopTimeoutMs: 600_000 });
    const second = await startServer(model, 2, model.config.numLayers, scratch.dir);
    servers.push(first, second);
    const relay = await holdingRelay(second.server.url); // holds the second server's answers: the step never finishes on the first
    try {
      const conns = await Promise.all([first.server.url, second.server.url].map((u) => ShardConnection.connect(u)));
      const ids = [sid(), sid()];
      const keys = await Promise.all(conns.map((c, i) => c.openSession(ids[i]!, 16)));
      const tagged = { step: 0n, position: 0, outputEncoding: "fp32" as const };
      const route = buildRoute(first.wallet.address, [{ url: relay.url, sessionId: ids[1]!, forwardKey: keys[1]!, server: second.wallet.address }], { ...tagged, rows: 1 });
      const done = conns[0]!.stepRouted({ sessionId: ids[0]!, ...tagged, input: encodeActivations(new Float32Array(H()).fill(0.1), 1, H(), "fp32"), route });
      done.catch(() => undefined);
      while (relay.held() === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      expect(first.server.inFlightCount).toBe(1);
      await first.stop(); // resolves: the deadline passed, the connections were closed
      await expect(done).rejects.toMatchObject({ code: "CLOSED" });
      for (const c of conns) c.close();
    } finally {
      await relay.close();
    }
  });

  it("limits the new next-hop connections one client's steps may cause", async () => {
    const s = await serve({ newPeersPerClientPerSecond: 1 });
    const conn = await ShardConnection.connect(s.server.url);
    const ids = [sid(), sid()];
    for (const id of ids) await conn.openSession(id, 16);
    const toNowhere = (id: string, port: number): Promise<unknown> =>
      conn
        .stepRouted({
          sessionId: id,
          step: 0n,
          position: 0,
          outputEncoding: "fp32",
          input: encodeActivations(new Float32Array(H()).fill(0.1), 1, H(), "fp32"),
          route: [{ url: `ws://127.0.0.1:${port}`, sessionId: sid(), tag: sid() }],
        })
        .then(
          () => "accepted",
          (err: unknown) => err,
        );
    // two steps at once, each naming a new next hop: the second is refused before anything runs
    const [a, b] = await Promise.all([toNowhere(ids[0]!, 9), toNowhere(ids[1]!, 10)]);
    expect(a).toMatchObject({ code: `SERVER_${ErrorCode.Upstream}` });
    expect(b).toMatchObject({ code: `SERVER_${ErrorCode.RateLimited}` });
    expect((b as Error).message).toContain("at most 1 new next-hop connections per second");
    conn.close();
  });

  it("refuses steps and tells the client at once when its receipt store cannot write", async () => {
    const s = await serve();
    const p = await peer(s.server.url);
    const id = sid();
    await p.send(open(id));
    s.store.close(); // the disk went away
    expect(await p.send(step(id, 0n, 0, 2))).toMatchObject({ type: MessageType.StepResult });
    await p.whenClosed();
    expect([p.closeCode, p.closeReason]).toEqual([1011, "receipt store failed: server takes no steps"]);
    expect(s.server.storeFailure).toContain(`writing 1 step(s) from step 0 of session ${id} failed`);
    const q = await peer(s.server.url);
    expectError(await q.send(open(sid())), ErrorCode.StoreFailed, "server cannot record receipts, so it takes no steps");
  });
});
