import { spawn, type ChildProcess } from "node:child_process";
import { hexlify, randomBytes } from "ethers";
import { WebSocketServer, type WebSocket } from "ws";
import { afterEach, describe, expect, it } from "vitest";
import { ShardConnection } from "../../client/shardClient.js";
import { Link, LinkError, LinkFailure, dialServer, type LinkOptions } from "../../protocol/link.js";
import { DEFAULT_LIMITS, ErrorCode, MessageType, encodeMessage, type Message } from "../../protocol/wire.js";
import { fakeServer, reply, serverInfo, type FakeServer } from "../support/fakeShardServer.js";

const open: FakeServer[] = [];
const root = new URL("../..", import.meta.url).pathname;

/** A server that says hello and answers nothing, in its own process (so it can be stopped or killed). */
async function childServer(): Promise<{ url: string; child: ChildProcess }> {
  const script =
    "const { WebSocketServer } = require('ws'); const w = new WebSocketServer({ host: '127.0.0.1', port: 0 });" +
    "w.on('listening', () => console.log(w.address().port)); w.on('connection', (s) => s.send(Buffer.from(process.env.HELLO, 'hex')));";
  const child = spawn(process.execPath, ["-e", script], { cwd: root, env: { ...process.env, HELLO: Buffer.from(encodeMessage(serverInfo())).toString("hex") } });
  const port = await new Promise<string>((resolve, reject) => {
    child.stdout!.once("data", (d: Buffer) => resolve(d.toString().trim()));
    child.once("exit", (code) => reject(new Error(`server process exited with ${code}`)));
  });
  return { url: `ws://127.0.0.1:${port}`, child };
}
const links: Link[] = [];
afterEach(async () => {
  for (const l of links.splice(0)) l.close();
  for (const s of open.splice(0)) await s.close();
});

const SESSION = hexlify(randomBytes(32));
const KEY = hexlify(randomBytes(32));

async function server(onMessage: (ws: WebSocket, m: Message) => void, o: Parameters<typeof fakeServer>[1] = {}): Promise<FakeServer> {
  const s = await fakeServer(onMessage, o);
  open.push(s);
  return s;
}

async function linkTo(url: string, o: Partial<LinkOptions> = {}): Promise<Link> {
  const { ws } = await dialServer(url, { connectTimeoutMs: 2_000, maxFrameBytes: 1 << 20 });
  const link = new Link(url, ws, { requestTimeoutMs: 2_000, heartbeatIntervalMs: 1_000, heartbeatTimeoutMs: 5_000, limits: DEFAULT_LIMITS, ...o });
  links.push(link);
  return link;
}

/** What a promise settles to: its value, or the error it rejects with. */
const settled = <T>(p: Promise<T>): Promise<T | unknown> => p.then((v) => v, (err: unknown) => err);

describe("Link (one request/response link over a WebSocket)", () => {
  it("resolves each request with the reply of the expected type, typed, matched by request id", async () => {
    const s = await server((ws, m) => {
      if (m.type === MessageType.OpenSession) {
        // answered out of order: the second request first
        setTimeout(() => reply(ws, { type: MessageType.SessionOpened, requestId: m.requestId, sessionId: m.sessionId, forwardKey: KEY }), m.maxLength === 1 ? 50 : 0);
      }
    });
    const link = await linkTo(s.url);
    const other = hexlify(randomBytes(32));
    const [a, b] = await Promise.all([
      link.request({ type: MessageType.OpenSession, sessionId: SESSION, maxLength: 1 }, MessageType.SessionOpened),
      link.request({ type: MessageType.OpenSession, sessionId: other, maxLength: 2 }, MessageType.SessionOpened),
    ]);
    // no cast: `forwardKey` exists only on SessionOpened
    expect([a.sessionId, a.forwardKey, b.sessionId]).toEqual([SESSION, KEY, other]);
    expect(link.busy).toBe(0);
  });

  it("rejects a reply of another type, and the peer's Error frame with its code, hop and the URL", async () => {
    const s = await server((ws, m) => {
      if (m.type === MessageType.OpenSession) reply(ws, { type: MessageType.SessionClosed, requestId: m.requestId, sessionId: m.sessionId });
      if (m.type === MessageType.CloseSession) reply(ws, { type: MessageType.Error, requestId: m.requestId, code: ErrorCode.Upstream, hop: 2, message: "far away" });
    });
    const link = await linkTo(s.url);
    const wrong = await settled(link.request({ type: MessageType.OpenSession, sessionId: SESSION, maxLength: 1 }, MessageType.SessionOpened));
    expect(wrong).toBeInstanceOf(LinkError);
    expect(wrong).toMatchObject({ code: LinkFailure.BadReply, message: `${s.url} answered with message type ${MessageType.SessionClosed}, expected ${MessageType.SessionOpened}` });
    const failed = await settled(link.request({ type: MessageType.CloseSession, sessionId: SESSION }, MessageType.SessionClosed));
    expect(failed).toMatchObject({
      code: `SERVER_${ErrorCode.Upstream}`,
      wireCode: ErrorCode.Upstream,
      hop: 2,
      message: `${s.url} (2 hops down its route): far away`,
      details: { url: s.url, code: ErrorCode.Upstream, hop: 2, message: "far away" },
    });
  });

  it("times a request out on its own deadline; the late reply goes to onUnsolicited", async () => {
    const s = await server((ws, m) => {
      setTimeout(() => reply(ws, { type: MessageType.SessionClosed, requestId: m.requestId, sessionId: SESSION }), 150);
    });
    const late: Message[] = [];
    const link = await linkTo(s.url, { onUnsolicited: (m) => late.push(m) });
    const err = await settled(link.request({ type: MessageType.CloseSession, sessionId: SESSION }, MessageType.SessionClosed, 20));
    expect(err).toMatchObject({ code: LinkFailure.Timeout, message: `${s.url} did not answer request 1 within 20 ms`, details: { url: s.url } });
    while (late.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(late[0]).toMatchObject({ type: MessageType.SessionClosed, requestId: 1 });
    // the link still works
    expect((await link.request({ type: MessageType.CloseSession, sessionId: SESSION }, MessageType.SessionClosed)).sessionId).toBe(SESSION);
  });

  it("declares a peer that stops answering pings dead: every pending request fails at once, naming the URL", async () => {
    const s = await server(() => undefined, { autoPong: false });
    const closes: LinkError[] = [];
    const link = await linkTo(s.url, { heartbeatIntervalMs: 50, heartbeatTimeoutMs: 200, requestTimeoutMs: 60_000, onClose: (e) => closes.push(e) });
    const pending = [1, 2, 3].map(() => settled(link.request({ type: MessageType.CloseSession, sessionId: SESSION }, MessageType.SessionClosed)));
    const errors = await Promise.all(pending);
    expect(errors[0]).toBeInstanceOf(LinkError);
    expect(errors[0]).toMatchObject({ code: LinkFailure.Silent, details: { url: s.url } });
    expect((errors[0] as Error).message).toMatch(new RegExp(`^${s.url} sent no frame and answered no ping for \\d+ ms \\(limit 200 ms\\): presumed dead or hung$`));
    // one failure, shared by all, reported once
    expect(errors[1]).toBe(errors[0]);
    expect(errors[2]).toBe(errors[0]);
    expect(closes).toEqual([errors[0]]);
    expect(link.closedBy).toBe(errors[0]);
    await expect(link.request({ type: MessageType.CloseSession, sessionId: SESSION }, MessageType.SessionClosed)).rejects.toBe(errors[0]);
  });

  it("keeps a quiet peer that answers pings alive", async () => {
    const s = await server((ws, m) => setTimeout(() => reply(ws, { type: MessageType.SessionClosed, requestId: m.requestId, sessionId: SESSION }), 2_000));
    const link = await linkTo(s.url, { heartbeatIntervalMs: 100, heartbeatTimeoutMs: 800, requestTimeoutMs: 10_000 });
    // the reply takes over twice the heartbeat timeout; pongs keep the link up meanwhile
    expect((await link.request({ type: MessageType.CloseSession, sessionId: SESSION }, MessageType.SessionClosed)).sessionId).toBe(SESSION);
    expect(link.closedBy).toBeUndefined();
  });

  it("fails every pending request when the peer closes, and every later one at once", async () => {
    const s = await server((ws, m) => {
      if (m.type === MessageType.FetchStep) ws.close(4001, "going away");
    });
    const link = await linkTo(s.url);
    const waiting = settled(link.request({ type: MessageType.CloseSession, sessionId: SESSION }, MessageType.SessionClosed));
    const closing = settled(link.request({ type: MessageType.FetchStep, leaf: SESSION }, MessageType.StoredStep));
    const [a, b] = await Promise.all([waiting, closing]);
    expect(a).toMatchObject({ code: LinkFailure.Closed, message: `connection to ${s.url} closed (4001 going away)` });
    expect(b).toBe(a);
    await expect(link.request({ type: MessageType.CloseSession, sessionId: SESSION }, MessageType.SessionClosed)).rejects.toBe(a);
  });

  it("fails everything on a frame that does not parse", async () => {
    const s = await server((ws) => ws.send(Uint8Array.of(99, 0, 0, 0, 0)));
    const link = await linkTo(s.url);
    const err = await settled(link.request({ type: MessageType.CloseSession, sessionId: SESSION }, MessageType.SessionClosed));
    expect(err).toMatchObject({ code: LinkFailure.BadFrame, message: `${s.url} sent a bad frame: unknown message type 99` });
  });

  it("does not send a frame over the peer's announced limit", async () => {
    const s = await server(() => undefined);
    const link = await linkTo(s.url, { maxSendBytes: 36 });
    const err = await settled(link.request({ type: MessageType.CloseSession, sessionId: SESSION }, MessageType.SessionClosed));
    expect(err).toMatchObject({ code: LinkFailure.TooLarge, message: `a 37-byte frame is over ${s.url}'s limit of 36` });
    expect(link.closedBy).toBeUndefined();
  });

  it("validates its timing, naming the option", async () => {
    const s = await server(() => undefined);
    const { ws } = await dialServer(s.url, { connectTimeoutMs: 2_000, maxFrameBytes: 1 << 20 });
    const make = (o: Partial<LinkOptions>): Link => new Link(s.url, ws, { requestTimeoutMs: 1, heartbeatIntervalMs: 1, heartbeatTimeoutMs: 2, limits: DEFAULT_LIMITS, ...o });
    expect(() => make({ requestTimeoutMs: 0 })).toThrow("link option requestTimeoutMs must be a positive integer of milliseconds, got 0");
    expect(() => make({ heartbeatTimeoutMs: 1 })).toThrow("link option heartbeatTimeoutMs (1) must exceed heartbeatIntervalMs (1)");
    ws.terminate();
  });
});

describe("dialServer (connect and read the server's hello)", () => {
  it("fails fast on a closed port, and names the URL", async () => {
    const s = await server(() => undefined);
    const url = s.url;
    await s.close();
    open.length = 0;
    const err = await settled(dialServer(url, { connectTimeoutMs: 2_000, maxFrameBytes: 1024 }));
    expect(err).toMatchObject({ code: LinkFailure.ConnectFailed, details: { url } });
    expect((err as Error).message).toContain(`cannot connect to ${url}: connect ECONNREFUSED`);
  });

  it("times out on a server that never says hello", async () => {
    const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await new Promise<void>((resolve) => wss.once("listening", resolve));
    const url = `ws://127.0.0.1:${(wss.address() as { port: number }).port}`;
    try {
      await expect(dialServer(url, { connectTimeoutMs: 100, maxFrameBytes: 1024 })).rejects.toMatchObject({
        code: LinkFailure.Timeout,
        message: `no server info from ${url} within 100 ms`,
      });
    } finally {
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    }
  });

  it("refuses another protocol version, a first frame that is not a hello, and reports a refusal", async () => {
    // a version-4 server's hello: the ServerInfo of today without the signing interval that version 5 added
    const old = await server(() => undefined, { hello: encodeMessage(serverInfo({ protocolVersion: 4 })).subarray(0, -2) });
    await expect(dialServer(old.url, { connectTimeoutMs: 2_000, maxFrameBytes: 4096 })).rejects.toMatchObject({
      code: LinkFailure.BadHandshake,
      message: `${old.url}: server speaks protocol 4, this side 5`,
    });
    const chatty = await server(() => undefined, { hello: encodeMessage({ type: MessageType.SessionClosed, requestId: 0, sessionId: SESSION }) });
    await expect(dialServer(chatty.url, { connectTimeoutMs: 2_000, maxFrameBytes: 4096 })).rejects.toMatchObject({
      code: LinkFailure.BadHandshake,
      message: `${chatty.url}: expected server info, got message type ${MessageType.SessionClosed}`,
    });
    const full = await server(() => undefined, {
      hello: encodeMessage({ type: MessageType.Error, requestId: 0, code: ErrorCode.Overloaded, hop: 0, message: "too many connections" }),
    });
    await expect(dialServer(full.url, { connectTimeoutMs: 2_000, maxFrameBytes: 4096 })).rejects.toMatchObject({
      code: `SERVER_${ErrorCode.Overloaded}`,
      message: `${full.url} refused the connection: too many connections`,
    });
  });
});

describe("ShardConnection on a Link", () => {
  it("a hung server fails the forwarded step's output wait and tells onClose, within the heartbeat timeout", async () => {
    const s = await server(() => undefined, { autoPong: false });
    const closes: LinkError[] = [];
    const c = await ShardConnection.connect(s.url, { heartbeatIntervalMs: 50, heartbeatTimeoutMs: 200, onClose: (e) => closes.push(e) });
    const output = c.awaitResult(SESSION, 0n);
    const err = await settled(output.result);
    expect(err).toMatchObject({ code: LinkFailure.Silent, details: { url: s.url } });
    expect(closes).toEqual([err]);
    await expect(c.openSession(SESSION, 4)).rejects.toBe(err);
    c.close();
  });

  it("with its default heartbeat, finds a hung (SIGSTOP) server before any request timeout, and a killed one at once", async () => {
    const hung = await childServer();
    const killed = await childServer();
    try {
      const conns = await Promise.all([hung, killed].map((c) => ShardConnection.connect(c.url)));
      const waits = conns.map((c) => settled(c.openSession(SESSION, 4))); // never answered: only the link's failure ends them
      hung.child.kill("SIGSTOP");
      killed.child.kill("SIGKILL");
      const [stopped, dead] = await Promise.all(waits);
      expect(stopped).toMatchObject({ code: LinkFailure.Silent, details: { url: hung.url } });
      expect((stopped as Error).message).toContain("(limit 3500 ms): presumed dead or hung");
      expect(dead).toMatchObject({ code: LinkFailure.Closed, message: `connection to ${killed.url} closed (1006 )` });
      for (const c of conns) c.close();
    } finally {
      hung.child.kill("SIGKILL");
      killed.child.kill("SIGKILL");
    }
  }, 30_000);

  it("validates its options before connecting", async () => {
    await expect(ShardConnection.connect("ws://127.0.0.1:9", { heartbeatIntervalMs: 5_000, heartbeatTimeoutMs: 5_000 })).rejects.toThrow(
      "link option heartbeatTimeoutMs (5000) must exceed heartbeatIntervalMs (5000)",
    );
  });
});
