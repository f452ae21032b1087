/**
 * The attacks of issue 9 ("Hostile network") on a route of two `efed server`s, for
 * `npm run bench:hostile`. Each attack runs from a loopback address other than the honest
 * client's (per-address limits see another host), speaks the wire protocol frame by frame, and is
 * bounded in count and in time: it sets up, calls `ctx.begin()` (the measured window starts), loads
 * the servers until the time `begin()` returned, then closes what it opened and returns what it
 * saw. Only `fakeNextHops` keeps something alive past its end (its silent next hops, closed by
 * `linger`), because a real attacker would. Every socket goes to a loopback address.
 */
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { connect as connectTcp, createServer as createTcpServer, type Server as TcpServer, type Socket } from "node:net";
import { randomBytes as nodeRandomBytes } from "node:crypto";
import { hexlify, randomBytes } from "ethers";
import { WebSocket, WebSocketServer } from "ws";
import { encodeActivations } from "../../../protocol/activations.js";
import { ownerProof } from "../../../protocol/fetchAuth.js";
import { receiptLeaf } from "../../../protocol/receipt.js";
import {
  ErrorCode,
  MessageType,
  decodeMessage,
  encodeMessage,
  type Hop,
  type Message,
  type ServerInfo,
  type Step,
  type StepReceipt,
} from "../../../protocol/wire.js";
import { median } from "./stats.js";

export interface AttackContext {
  /** ws:// URLs of the route's servers, in route order (layers 0:4, then 4:8). */
  urls: readonly string[];
  /** Loopback address the attacker's sockets bind to (127.0.0.2): another host to per-address limits. */
  address: string;
  /** Receipt leaves of the honest client's steps on the first server, as a stranger who saw them would have. */
  leakedLeaves: readonly string[];
  /** The load has started: the measured window begins. Returns the time (ms since the epoch) at which the attack must stop. */
  begin(): number;
}

export interface AttackOutcome {
  /** What the attacker observed, one line of markdown. */
  saw: string;
  /** Closes what the attack keeps alive after its end; called once the server's recovery is measured. */
  linger?: () => Promise<void>;
}

export interface Attack {
  name: string;
  /** One line for the table: what the attacker does. */
  title: string;
  run(ctx: AttackContext): Promise<AttackOutcome>;
}

/** Largest step the shipped model's context (512) leaves room for in a new session. */
const PREFILL_ROWS = 511;
const HIDDEN = 256;

// ---------------------------------------------------------------- the attacks

/**
 * Opens a session on the first server, runs one 511-token step, and then sends FetchSteps for that
 * step (with a valid owner proof: each reply is ~1 MB) on a socket it never reads again, as fast as
 * its own send queue drains, up to 20,000 requests. The server should answer at most its fetch rate
 * (50/s), stop reading the connection once 32 requests are in flight or 8 MiB of replies are
 * queued, and stay small; the honest client is unaffected.
 */
export async function unreadFetchFlood(ctx: AttackContext): Promise<AttackOutcome> {
  const p = await AttackPeer.open(ctx.urls[0]!, ctx.address);
  const { sessionId, forwardKey } = await p.openSession(PREFILL_ROWS);
  const [, receipt] = await p.request(stepMessage(sessionId, 0n, 0, PREFILL_ROWS), 2);
  if (receipt?.type !== MessageType.StepReceipt) throw new Error(`the attacker's prefill was refused: ${describe(receipt)}`);
  const leaf = leafOf(p.info, sessionId, 0n, PREFILL_ROWS, receipt);
  const frame = encodeMessage({ type: MessageType.FetchStep, requestId: 1, leaf, ownerProof: ownerProof(forwardKey, p.info.challenge, leaf) });
  p.ws.pause(); // never read again
  const until = ctx.begin();
  let sent = 0;
  while (Date.now() < until && sent < 20_000) {
    if (p.ws.bufferedAmount < 256 * 1024) {
      p.ws.send(frame);
      sent++;
    } else await sleep(10);
  }
  const stuck = p.ws.bufferedAmount;
  p.ws.terminate();
  return {
    saw: `${fmt(sent)} FetchSteps sent (${fmt((sent * frame.byteLength) / 1024)} KiB), each answerable with ${fmt(2 * PREFILL_ROWS * HIDDEN * 4 / 1024)} KiB; ${fmt(stuck / 1024)} KiB of them still unsent at the end (not read by the server)`,
  };
}

/**
 * From a connection that owns nothing, asks both servers for the honest client's steps by receipt
 * leaf (leaves anyone on the path could see), without a proof and with a made-up one, 8 requests in
 * flight per connection. The server should refuse every one (Forbidden, or RateLimited past 50/s)
 * and never send activations.
 */
export async function strangerFetch(ctx: AttackContext): Promise<AttackOutcome> {
  if (ctx.leakedLeaves.length === 0) throw new Error("strangerFetch needs the honest client's receipt leaves");
  const peers = await Promise.all(ctx.urls.map((u) => AttackPeer.open(u, ctx.address)));
  const replies = peers.map(() => new Tally());
  let bytesIn = 0;
  let requests = 0;
  const until = ctx.begin();
  const worker = async (s: number, w: number): Promise<void> => {
    const p = peers[s]!;
    for (let i = w; Date.now() < until && !p.closed; i++) {
      const leaf = ctx.leakedLeaves[i % ctx.leakedLeaves.length]!;
      const proof = i % 2 === 0 ? {} : { ownerProof: hexlify(randomBytes(32)) };
      const [m] = await p.request({ type: MessageType.FetchStep, requestId: 0, leaf, ...proof });
      requests++;
      bytesIn += m === undefined || m.type === "closed" ? 0 : encodeMessage(m).byteLength;
      replies[s]!.add(replyName(m));
    }
  };
  await Promise.all(peers.flatMap((_, s) => Array.from({ length: 8 }, (_, w) => worker(s, w))));
  for (const p of peers) p.close();
  const perServer = replies.map((r, s) => `server ${s + 1} (${s === 0 ? "holds them" : "does not"}): ${r.text()}`).join("; ");
  return { saw: `${fmt(requests)} FetchSteps for the honest client's leaves on server 1, half without a proof, half with a made-up one: ${perServer}; ${fmt(bytesIn / Math.max(1, requests))} bytes per reply on average` };
}

/**
 * One address opens connections (up to 16 per server, the per-address limit) and sessions on each
 * until the server refuses, then holds them all for the window. The server should stop it at 32
 * sessions per address and keep room for the honest client's sessions.
 */
export async function sessionHoarder(ctx: AttackContext): Promise<AttackOutcome> {
  const held: AttackPeer[] = [];
  const perServer: string[] = [];
  for (const url of ctx.urls) {
    let sessions = 0;
    let refusal = "";
    for (let c = 0; c < 16 && refusal === ""; c++) {
      const p = await AttackPeer.open(url, ctx.address);
      held.push(p);
      if (p.refusal !== undefined) {
        refusal = p.refusal;
        break;
      }
      for (let s = 0; s < 64; s++) {
        const [m] = await p.request({ type: MessageType.OpenSession, requestId: 0, sessionId: sid(), maxLength: PREFILL_ROWS });
        if (m?.type !== MessageType.SessionOpened) {
          // a per-connection refusal moves on to the next connection; a per-address one ends the hoarding
          if (!describe(m).includes("this connection")) refusal = describe(m);
          break;
        }
        sessions++;
      }
    }
    perServer.push(`${sessions} sessions, then "${refusal}"`);
  }
  const until = ctx.begin();
  await sleep(until - Date.now());
  for (const p of held) p.close();
  return { saw: perServer.map((s, i) => `server ${i + 1}: ${s}`).join("; ") };
}

/**
 * 64 sessions (32 per server: 4 connections of 8, the per-address session limit) each loop:
 * open a session, send one 511-token prefill, close it. The server should serve clients in turn,
 * so the honest client keeps about its fair share (half) of the engine.
 */
export async function prefillFlood(ctx: AttackContext): Promise<AttackOutcome> {
  const peers = (await Promise.all(ctx.urls.flatMap((u) => Array.from({ length: 4 }, () => AttackPeer.open(u, ctx.address))))).filter((p) => !p.closed);
  const refusals = new Tally();
  let prefills = 0;
  const until = ctx.begin();
  const started = Date.now();
  const loop = async (p: AttackPeer): Promise<void> => {
    while (Date.now() < until && !p.closed) {
      const sessionId = sid();
      const [opened] = await p.request({ type: MessageType.OpenSession, requestId: 0, sessionId, maxLength: PREFILL_ROWS });
      if (opened?.type !== MessageType.SessionOpened) {
        refusals.add(replyName(opened));
        await sleep(50);
        continue;
      }
      const [m] = await p.request(stepMessage(sessionId, 0n, 0, PREFILL_ROWS));
      if (m?.type === MessageType.StepResult) prefills++;
      else refusals.add(replyName(m));
      await p.request({ type: MessageType.CloseSession, requestId: 0, sessionId });
    }
  };
  await Promise.all(peers.flatMap((p) => Array.from({ length: 8 }, () => loop(p))));
  const seconds = (Date.now() - started) / 1000;
  for (const p of peers) p.close();
  return { saw: `${fmt(prefills)} prefills of ${PREFILL_ROWS} tokens (${fmt((prefills * PREFILL_ROWS) / seconds)} tokens/s) from ${peers.length * 8} looping sessions; refused: ${refusals.text()}` };
}

/**
 * Rounds of: open a session on the first server, push 10 steps of 32 tokens all claiming position 0
 * without waiting, collect the answers, then ask for position 0 again to learn the cache length.
 * The server should run one step per session at a time: one accepted, nine refused (Busy or
 * BadPosition), and the cache holds 32 tokens, not 320.
 */
export async function pipelinedSamePosition(ctx: AttackContext): Promise<AttackOutcome> {
  const p = await AttackPeer.open(ctx.urls[0]!, ctx.address);
  const answers = new Tally();
  const cacheLengths = new Set<string>();
  let rounds = 0;
  const until = ctx.begin();
  while (Date.now() < until && !p.closed && rounds < 500) {
    const { sessionId } = await p.openSession(PREFILL_ROWS);
    const all = await Promise.all(Array.from({ length: 10 }, () => p.request(stepMessage(sessionId, 0n, 0, 32))));
    for (const [m] of all) answers.add(replyName(m));
    const [probe] = await p.request(stepMessage(sessionId, 1n, 0, 1));
    cacheLengths.add(/is at position (\d+)/.exec(describe(probe))?.[1] ?? describe(probe));
    await p.request({ type: MessageType.CloseSession, requestId: 0, sessionId });
    rounds++;
  }
  p.close();
  return { saw: `${rounds} rounds × 10 pipelined steps at position 0: ${answers.text()}; cache length after a round: ${[...cacheLengths].join(", ")} tokens` };
}

/**
 * Opens sessions of 2,048 tokens (four times the shipped model's context) on both servers in a
 * loop. The server should announce its real limit (512) and refuse at open, so no generation
 * fails at token 513.
 */
export async function overlongSession(ctx: AttackContext): Promise<AttackOutcome> {
  const peers = await Promise.all(ctx.urls.map((u) => AttackPeer.open(u, ctx.address)));
  const answers = new Tally();
  const messages = new Set<string>();
  const until = ctx.begin();
  await Promise.all(
    peers.map(async (p) => {
      for (let i = 0; i < 20_000 && Date.now() < until && !p.closed; i++) {
        const [m] = await p.request({ type: MessageType.OpenSession, requestId: 0, sessionId: sid(), maxLength: 2048 });
        answers.add(replyName(m));
        if (m?.type === MessageType.Error) messages.add(m.message);
        await sleep(5);
      }
    }),
  );
  for (const p of peers) p.close();
  return { saw: `servers announce maxSessionTokens ${peers.map((p) => p.info.maxSessionTokens).join(" and ")}; opens of 2,048 tokens: ${answers.text()} ("${[...messages].join('", "')}")` };
}

/**
 * Uses the first server as a port scanner: 4 connections, one session each, send 1-token steps
 * whose route names ws://127.0.0.1:PORT, for three kinds of port the attacker itself opened: one
 * that accepts TCP and stays silent, one closed, one plain HTTP server. Records, per kind, the
 * reply and its delay. The server should give the same error after a similar delay whatever
 * answered, and limit new outbound connections per client (2/s).
 */
export async function portScan(ctx: AttackContext): Promise<AttackOutcome> {
  const targets = await scanTargets();
  const peers = await Promise.all(Array.from({ length: 4 }, () => AttackPeer.open(ctx.urls[0]!, ctx.address)));
  const seen = new Map<string, { messages: Set<string>; delaysMs: number[] }>(targets.ports.map(([kind]) => [kind, { messages: new Set(), delaysMs: [] }]));
  const other = new Tally();
  const until = ctx.begin();
  const started = Date.now();
  await Promise.all(
    peers.map(async (p, w) => {
      let { sessionId } = await p.openSession(PREFILL_ROWS);
      let step = 0n;
      for (let i = w; Date.now() < until && !p.closed; i++) {
        const [kind, port] = targets.ports[i % targets.ports.length]!;
        const route: Hop[] = [{ url: `ws://127.0.0.1:${port}`, sessionId: sid(), tag: sid() }];
        const t0 = Date.now();
        // the receipt comes once this server's layers ran; then the forward's outcome
        const replies = await p.request({ ...stepMessage(sessionId, step, Number(step), 1), route }, 2);
        const delayMs = Date.now() - t0;
        const m = replies[replies.length - 1];
        if (replies[0]?.type === MessageType.StepReceipt) step++; // the step ran: the session moved on
        if (m?.type === MessageType.Error && (m.code === ErrorCode.RateLimited || m.code === ErrorCode.Busy)) {
          other.add(replyName(m));
          i--; // the same target again once allowed
          await sleep(100);
          continue;
        }
        const entry = seen.get(kind)!;
        entry.messages.add(describe(m).replaceAll(String(port), "PORT"));
        entry.delaysMs.push(delayMs);
        if (step >= PREFILL_ROWS - 1) {
          sessionId = (await p.openSession(PREFILL_ROWS)).sessionId;
          step = 0n;
        }
      }
    }),
  );
  const seconds = (Date.now() - started) / 1000;
  for (const p of peers) p.close();
  await targets.close();
  const probes = [...seen.values()].reduce((n, e) => n + e.delaysMs.length, 0);
  const kinds = [...seen].map(([kind, e]) =>
    e.delaysMs.length === 0 ? `${kind}: no answer in time` : `${kind}: "${[...e.messages].join('" / "')}" after ${fmt(median(e.delaysMs))} ms (median of ${e.delaysMs.length})`,
  );
  return { saw: `${kinds.join("; ")}; ${probes} probes answered (${(probes / seconds).toFixed(1)}/s); refused before connecting: ${other.text()}` };
}

/**
 * Starts 64 WebSocket servers of its own that announce the second server's identity and layers
 * (copied from its ServerInfo), answer pings, and never answer a step. Then 16 connections to the
 * first server (the per-address limit) send 1-token steps whose route is one fake next hop
 * followed by 15 made-up hops (the longest route), 4 fake hops per connection, keeping as many
 * steps parked as the server lets them. At the end the attacker closes its connections but keeps
 * the fake hops up. The server should cap what is parked per session and per client and the wait
 * per hop, keep room for honest forwarded routes, and shut down within its deadline.
 */
export async function fakeNextHops(ctx: AttackContext): Promise<AttackOutcome> {
  const probe = await AttackPeer.open(ctx.urls[1]!, ctx.address);
  const infoFrame = encodeMessage(probe.info);
  probe.close();
  const fakes = await Promise.all(Array.from({ length: 64 }, () => silentShardServer(infoFrame)));
  const peers = (await Promise.all(Array.from({ length: 16 }, () => AttackPeer.open(ctx.urls[0]!, ctx.address)))).filter((p) => !p.closed);
  const answers = new Tally();
  let parked = 0;
  const until = ctx.begin();
  await Promise.all(
    peers.map(async (p, c) => {
      const sessions = await Promise.all(Array.from({ length: 2 }, () => p.openSession(PREFILL_ROWS)));
      const steps = sessions.map(() => 0n);
      for (let i = 0; Date.now() < until && !p.closed && i < 2_000; i++) {
        const s = i % sessions.length;
        const fake = fakes[(c * 4 + (i % 4)) % fakes.length]!;
        // one fake next hop, then made-up hops up to the longest route the wire allows
        const urls = [fake.url, ...Array.from({ length: 15 }, (_, k) => `ws://127.0.0.1:${9 + k}`)];
        const route: Hop[] = urls.map((url) => ({ url, sessionId: sid(), tag: sid() }));
        // the receipt comes as soon as this server's layers ran: the step is then parked on the fake hop
        const [m] = await p.request({ ...stepMessage(sessions[s]!.sessionId, steps[s]!, Number(steps[s]), 1), route });
        if (m?.type === MessageType.StepReceipt) {
          steps[s]!++;
          parked++;
        } else {
          answers.add(replyName(m));
          await sleep(100);
        }
      }
    }),
  );
  for (const p of peers) p.close();
  const connected = fakes.reduce((n, f) => n + f.connections(), 0);
  return {
    saw: `${fakes.length} fake next hops (${connected} connections from the server); ${fmt(parked)} steps parked on them; refused: ${answers.text()}`,
    linger: async () => {
      await Promise.all(fakes.map((f) => f.close()));
    },
  };
}

/**
 * Rounds of 30 raw connections to the first server, each announcing one binary frame of 32 MiB − 1
 * bytes and streaming it in 64 KiB pieces until the server closes. The server should close each
 * connection (1009, message too big) as soon as the header announces more than its frame limit
 * (the largest valid message of the served model), holding nothing, and refuse connections over
 * its per-address limit.
 */
export async function oversizedFrames(ctx: AttackContext): Promise<AttackOutcome> {
  const url = new URL(ctx.urls[0]!);
  const closes = new Tally();
  const acceptedKiB: number[] = [];
  let rounds = 0;
  const until = ctx.begin();
  while (Date.now() < until && rounds < 20) {
    const results = await Promise.all(Array.from({ length: 30 }, () => sendOversizedFrame(url.hostname, Number(url.port), ctx.address, 32 * 1024 * 1024 - 1)));
    for (const r of results) {
      closes.add(r.closeCode === undefined ? "no close frame" : `close ${r.closeCode}`);
      acceptedKiB.push(r.sentBytes / 1024);
    }
    rounds++;
  }
  return { saw: `${rounds} rounds × 30 connections: ${closes.text()}; the attacker's socket took ${fmt(median(acceptedKiB))} KiB (median, max ${fmt(Math.max(...acceptedKiB))}; loopback socket buffers) of the announced 32 MiB before the server closed it` };
}

/**
 * Opens connections that never open a session, from 16 loopback addresses (127.0.0.2…127.0.0.17,
 * 16 each: the per-address limit) to each server, up to the server's connection limit (256), and
 * reopens any the server closes, for the window. A single address gets only 16: reaching the total
 * limit needs many hosts. The server should refuse over its limits and close connections idle
 * without a session (after 30 s by default).
 */
export async function idleConnections(ctx: AttackContext): Promise<AttackOutcome> {
  const base = ctx.address.split(".").map(Number);
  const addresses = Array.from({ length: 16 }, (_, i) => [base[0], base[1], base[2], base[3]! + i].join("."));
  const held = new Set<AttackPeer>();
  const refusals = new Tally();
  let opened = 0;
  let attempts = 0;
  const fill = async (url: string, address: string): Promise<void> => {
    for (let i = 0; i < 16 && attempts < 2_000; i++) {
      attempts++;
      const p = await AttackPeer.open(url, address);
      if (p.refusal !== undefined || p.closed) {
        refusals.add(p.refusal?.replace(/\d+\.\d+\.\d+\.\d+/, "ADDRESS") ?? "closed");
        p.close();
        return;
      }
      held.add(p);
      opened++;
      p.ws.once("close", () => held.delete(p));
    }
  };
  const fillAll = (): Promise<unknown> => Promise.all(ctx.urls.flatMap((u) => addresses.map((a) => fill(u, a))));
  await fillAll();
  const until = ctx.begin();
  while (Date.now() < until && attempts < 2_000) {
    await sleep(Math.min(1_000, until - Date.now()));
    if (held.size < opened) await fillAll(); // the server closed some: take them back
  }
  for (const p of held) p.close();
  return { saw: `${opened} idle connections opened in ${attempts} attempts (${held.size} open at the end); refusals: ${refusals.text()}` };
}

export const ATTACKS: readonly Attack[] = [
  { name: "unread-fetch", title: "pipelined FetchSteps on a socket never read", run: unreadFetchFlood },
  { name: "stranger-fetch", title: "FetchStep of the honest client's steps, as a stranger", run: strangerFetch },
  { name: "session-hoard", title: "one address opens sessions until refused", run: sessionHoarder },
  { name: "prefill-flood", title: "64 sessions looping 511-token prefills", run: prefillFlood },
  { name: "same-position", title: "10 pipelined steps of one session at position 0", run: pipelinedSamePosition },
  { name: "overlong-session", title: "sessions of 2,048 tokens (context 512)", run: overlongSession },
  { name: "port-scan", title: "routes naming loopback ports (port scan)", run: portScan },
  { name: "fake-hops", title: "64 fake next hops that never answer, 16-hop routes", run: fakeNextHops },
  { name: "oversized-frames", title: "30 connections each sending a 32 MiB frame", run: oversizedFrames },
  { name: "idle-connections", title: "idle connections up to the connection limit (16 addresses)", run: idleConnections },
];

// ---------------------------------------------------------------- a client whose server fails

export interface ServerFailure {
  /** What happens to the server: SIGKILL (dead) or SIGSTOP (hung). */
  signal: "SIGKILL" | "SIGSTOP";
  /** The server process. */
  pid: number;
}

/**
 * A client generating through a route when one of its servers is killed (SIGKILL: the kernel
 * closes its sockets) or hung (SIGSTOP: sockets stay open, nothing answers) mid-generation. Starts
 * `generation`, sends `failure.signal` after `afterMs`, and returns how long after the signal a
 * step first failed (`firstFailureAtMs`, read from the caller's pipeline) and the generation
 * returned its error (each `undefined` if it had not within `capMs`), with that error. A stopped
 * server is always continued and killed before this returns. The client should notice a dead
 * server within 2 s and a hung one within 5 s.
 */
export async function serverFailsMidGeneration(
  generation: () => Promise<unknown>,
  firstFailureAtMs: () => number | undefined,
  failure: ServerFailure,
  afterMs: number,
  capMs: number,
): Promise<{ stepFailedMs: number | undefined; returnedMs: number | undefined; error: string; finishedFirst: boolean }> {
  const outcome = generation().then(
    () => ({ failed: false, error: "", at: Date.now() }),
    (err: unknown) => ({ failed: true, error: err instanceof Error ? err.message : String(err), at: Date.now() }),
  );
  let signalledAt: number;
  try {
    const early = await Promise.race([outcome, sleep(afterMs).then(() => undefined)]);
    if (early !== undefined) return { stepFailedMs: undefined, returnedMs: undefined, error: early.error, finishedFirst: true };
    process.kill(failure.pid, failure.signal);
    signalledAt = Date.now();
    const done = await Promise.race([outcome, sleep(capMs).then(() => undefined)]);
    const failedAt = firstFailureAtMs();
    const stepFailedMs = failedAt === undefined || failedAt - signalledAt > capMs ? undefined : failedAt - signalledAt;
    if (done === undefined) return { stepFailedMs, returnedMs: undefined, error: `no error after ${capMs} ms`, finishedFirst: false };
    return { stepFailedMs, returnedMs: done.failed ? done.at - signalledAt : undefined, error: done.failed ? done.error : "the generation finished", finishedFirst: false };
  } finally {
    if (failure.signal === "SIGSTOP") {
      process.kill(failure.pid, "SIGCONT");
      process.kill(failure.pid, "SIGKILL");
    }
    await Promise.race([outcome, sleep(5_000)]); // the generation ends once its server is gone
  }
}

// ---------------------------------------------------------------- the attacker's wire protocol

/** A reply, or the connection's close in its place. */
type Reply = Message | { type: "closed" };
const CLOSED = { type: "closed" } as const;

/**
 * One attacker connection to a shard server: requests with fresh request ids, the replies to each
 * collected by id (a step gets its StepResult or StepReceipt, then more); frames with request id 0
 * are ignored. Socket errors end in "closed" replies, never in exceptions.
 */
class AttackPeer {
  info!: ServerInfo;
  /** The server's Error in place of its info: the connection was refused. */
  refusal: string | undefined;
  closed = false;
  private nextRequestId = 1;
  private readonly waiting = new Map<number, { want: number; got: Message[]; done: (m: Reply[]) => void }>();

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data) => this.receive(decodeMessage(data as Buffer)));
    ws.on("close", () => {
      this.closed = true;
      for (const w of this.waiting.values()) w.done([...w.got, CLOSED]);
      this.waiting.clear();
    });
    ws.on("error", () => undefined); // a refused or reset connection ends in "close"
  }

  /** Connects from `address` and reads the server's first frame (its info, or the refusal). */
  static open(url: string, address: string, timeoutMs = 10_000): Promise<AttackPeer> {
    const p = new AttackPeer(new WebSocket(url, { localAddress: address, perMessageDeflate: false, handshakeTimeout: timeoutMs }));
    return new Promise((resolve) => {
      p.waiting.set(0, { want: 1, got: [], done: () => resolve(p) });
    });
  }

  /** Sends `m` with a fresh request id; resolves with its first `want` replies (fewer after an Error or the close). */
  request(m: Message, want = 1): Promise<Reply[]> {
    if (this.closed) return Promise.resolve([CLOSED]);
    const requestId = this.nextRequestId++;
    return new Promise((resolve) => {
      this.waiting.set(requestId, { want, got: [], done: resolve });
      this.ws.send(encodeMessage({ ...m, requestId } as Message));
    });
  }

  async openSession(maxLength: number): Promise<{ sessionId: string; forwardKey: string }> {
    const sessionId = sid();
    const [m] = await this.request({ type: MessageType.OpenSession, requestId: 0, sessionId, maxLength });
    if (m?.type !== MessageType.SessionOpened) throw new Error(`the attacker could not open a session: ${describe(m)}`);
    return { sessionId, forwardKey: m.forwardKey };
  }

  close(): void {
    this.ws.terminate();
  }

  private receive(m: Message): void {
    if (m.type === MessageType.ServerInfo) this.info = m;
    const w = this.waiting.get(m.requestId);
    if (m.requestId === 0 && w !== undefined && m.type === MessageType.Error) this.refusal = m.message;
    if (w === undefined) return;
    w.got.push(m);
    if (w.got.length >= w.want || m.type === MessageType.Error) {
      this.waiting.delete(m.requestId);
      w.done(w.got);
    }
  }
}

/** A Step of `rows` tokens (values 0.25) with no route: the output comes back to the sender. */
function stepMessage(sessionId: string, step: bigint, position: number, rows: number): Step {
  return { type: MessageType.Step, requestId: 0, sessionId, step, position, outputEncoding: "fp32", input: activations(rows), route: [] };
}

const activationCache = new Map<number, ReturnType<typeof encodeActivations>>();
function activations(rows: number): ReturnType<typeof encodeActivations> {
  let a = activationCache.get(rows);
  if (a === undefined) activationCache.set(rows, (a = encodeActivations(new Float32Array(rows * HIDDEN).fill(0.25), rows, HIDDEN, "fp32")));
  return a;
}

/** The Merkle leaf of the receipt a server sent for the attacker's own step. */
function leafOf(info: ServerInfo, sessionId: string, step: bigint, tokens: number, r: StepReceipt): string {
  const { firstLayer, lastLayer, inputHash, outputHash, server } = r.signed;
  return receiptLeaf({ sessionId, step, firstLayer, lastLayer, variantId: info.variantId, inputHash, outputHash, tokens, server });
}

/** A silent next hop: a WebSocket server that sends a real server's info frame, answers pings and nothing else. */
async function silentShardServer(infoFrame: Uint8Array): Promise<{ url: string; connections(): number; close(): Promise<void> }> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false, maxPayload: 4 * 1024 * 1024 });
  await new Promise<void>((resolve) => wss.once("listening", resolve));
  let connections = 0;
  wss.on("connection", (ws) => {
    connections++;
    ws.on("error", () => undefined);
    ws.send(infoFrame);
  });
  const { port } = wss.address() as { port: number };
  return {
    url: `ws://127.0.0.1:${port}`,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => resolve());
      }),
  };
}

/** Ports of three kinds on 127.0.0.1, opened by the attacker itself: silent TCP, closed, plain HTTP. */
async function scanTargets(): Promise<{ ports: [kind: string, port: number][]; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const silent: TcpServer = createTcpServer((s) => {
    sockets.add(s);
    s.on("error", () => undefined);
  });
  const http: HttpServer = createHttpServer((_, res) => res.writeHead(404).end("not here"));
  const closed = createTcpServer();
  const listen = (s: TcpServer | HttpServer): Promise<number> =>
    new Promise((resolve) => s.listen(0, "127.0.0.1", () => resolve((s.address() as { port: number }).port)));
  const [silentPort, httpPort, closedPort] = await Promise.all([listen(silent), listen(http), listen(closed)]);
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  return {
    ports: [
      ["silent port", silentPort],
      ["closed port", closedPort],
      ["HTTP port", httpPort],
    ],
    close: async () => {
      for (const s of sockets) s.destroy();
      http.closeAllConnections();
      await Promise.all([silent, http].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  };
}

/**
 * A WebSocket client written by hand, because `ws` cannot announce a frame it does not hold: the
 * upgrade, then one masked binary frame header announcing `frameBytes`, then zeros in 64 KiB
 * pieces until the server closes. Returns the bytes written after the header and the close code
 * the server sent, if any.
 */
function sendOversizedFrame(host: string, port: number, localAddress: string, frameBytes: number): Promise<{ sentBytes: number; closeCode: number | undefined }> {
  return new Promise((resolve) => {
    const socket = connectTcp({ host, port, localAddress });
    let received = Buffer.alloc(0);
    let upgraded = false;
    let sentBytes = 0;
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      socket.destroy();
      resolve({ sentBytes, closeCode: closeCodeIn(received) });
    };
    const timer = setTimeout(end, 30_000);
    socket.on("error", end);
    socket.on("close", () => {
      clearTimeout(timer);
      end();
    });
    socket.on("connect", () => {
      const key = nodeRandomBytes(16).toString("base64");
      socket.write(`GET / HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    const chunk = Buffer.alloc(64 * 1024);
    const pump = (): void => {
      while (!ended && sentBytes < frameBytes) {
        const n = Math.min(chunk.length, frameBytes - sentBytes);
        sentBytes += n;
        if (!socket.write(chunk.subarray(0, n))) return void socket.once("drain", pump);
      }
    };
    socket.on("data", (d: Buffer) => {
      received = Buffer.concat([received, d]);
      if (upgraded) return;
      const headerEnd = received.indexOf("\r\n\r\n");
      if (headerEnd === -1) return;
      if (!received.subarray(0, 12).toString().includes("101")) return end();
      upgraded = true;
      received = received.subarray(headerEnd + 4);
      const header = Buffer.alloc(14);
      header[0] = 0x82; // FIN, binary
      header[1] = 0x80 | 127; // masked, 64-bit length
      header.writeBigUInt64BE(BigInt(frameBytes), 2);
      nodeRandomBytes(4).copy(header, 10);
      socket.write(header);
      pump();
    });
  });
}

/** The status code of the first close frame among the server's (unmasked) frames in `bytes`. */
function closeCodeIn(bytes: Buffer): number | undefined {
  let at = 0;
  while (at + 2 <= bytes.length) {
    const opcode = bytes[at]! & 0x0f;
    let length = bytes[at + 1]! & 0x7f;
    let header = 2;
    if (length === 126) {
      if (at + 4 > bytes.length) return undefined;
      length = bytes.readUInt16BE(at + 2);
      header = 4;
    } else if (length === 127) {
      if (at + 10 > bytes.length) return undefined;
      length = Number(bytes.readBigUInt64BE(at + 2));
      header = 10;
    }
    if (opcode === 0x8) return length >= 2 && at + header + 2 <= bytes.length ? bytes.readUInt16BE(at + header) : undefined;
    at += header + length;
  }
  return undefined;
}

// ---------------------------------------------------------------- small helpers

/** Counts of named outcomes, printed most frequent first: "Forbidden ×120, RateLimited ×3". */
class Tally {
  private readonly counts = new Map<string, number>();
  add(name: string): void {
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
  }
  text(): string {
    if (this.counts.size === 0) return "nothing";
    return [...this.counts].sort((a, b) => b[1] - a[1]).map(([name, n]) => `${name} ×${fmt(n)}`).join(", ");
  }
}

const ERROR_NAMES = new Map<number, string>(Object.entries(ErrorCode).map(([name, code]) => [code, name]));
const MESSAGE_NAMES = new Map<number, string>(Object.entries(MessageType).map(([name, code]) => [code, name]));

/** A reply's type, or its error code's name. */
function replyName(m: Reply | undefined): string {
  if (m === undefined || m.type === "closed") return "connection closed";
  if (m.type === MessageType.Error) return ERROR_NAMES.get(m.code) ?? `error ${m.code}`;
  return MESSAGE_NAMES.get(m.type) ?? `message ${m.type}`;
}

/** A reply as text: an Error's code and message, else its type. */
function describe(m: Reply | undefined): string {
  if (m?.type === MessageType.Error) return `${replyName(m)}: ${m.message}`;
  return replyName(m);
}

const sid = (): string => hexlify(randomBytes(32));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
const fmt = (n: number): string => Math.round(n).toLocaleString("en-US");
