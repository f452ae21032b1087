import { WebSocket, WebSocketServer, type RawData } from "ws";
import { SEAL_BYTES } from "../../../protocol/peerAuth.js";
import { MessageType, decodeMessage, encodeMessage, type Message, type OpenSession, type SessionClosed, type Step, type StepReceipt } from "../../../protocol/wire.js";

/** What a test does with the frames through a relay. */
export interface FaultHooks {
  /** Called with every Step frame on its way to the server, before it is passed on (or not: see `freeze`, `kill`). */
  onStep?: (m: Step, relay: FaultRelay) => void;
  /** Rewrites the StepReceipt frames the server sends (a server that signs what it should not). */
  rewriteReceipt?: (m: StepReceipt) => StepReceipt;
  /** Rewrites the SessionClosed frames the server sends (a server that does not sign the rest of its receipts). */
  rewriteClosed?: (m: SessionClosed) => SessionClosed;
  /**
   * Holds the server's StepReceipt frames until no Step frame has come for this many milliseconds:
   * receipts that come late but come, however many steps the client sends meanwhile.
   */
  holdReceiptsUntilIdleMs?: number;
}

export interface FaultRelay {
  /** ws:// URL of the relay: use it in a route instead of the server's. */
  url: string;
  /** Every Step frame passed to the server, in order. */
  readonly steps: Step[];
  /** Every OpenSession frame passed to the server. */
  readonly opened: OpenSession[];
  /** Connections open through the relay now. */
  openConnections(): number;
  /** Resolves once at least one connection went through and none is open any more. */
  allClosed(): Promise<void>;
  /** From now on no frame passes either way and connections stay open: a hung server, as its peers see it. */
  freeze(): void;
  /** Drops every connection at once and refuses new ones: a killed server, as its peers see it. */
  kill(): void;
  close(): Promise<void>;
}

/**
 * A WebSocket relay on 127.0.0.1 in front of a real shard server, for faults seen from outside: it
 * passes frames both ways, shows the test each Step (and may freeze or drop everything from then
 * on), and rewrites the server's StepReceipt frames when told to. Only the frames it acts on are
 * decoded; everything else passes byte for byte.
 */
export async function faultRelay(target: string, hooks: FaultHooks = {}): Promise<FaultRelay> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise<void>((resolve) => wss.once("listening", resolve));
  const steps: Step[] = [];
  const opened: OpenSession[] = [];
  let frozen = false;
  let killed = false;
  let seen = 0;
  let open = 0;
  let onAllClosed: (() => void) | undefined;
  const sockets: WebSocket[] = [];

  // A step forwarded by another server carries its link's MAC trailer after the message: look past it.
  const decode = (data: RawData): Message => {
    const bytes = new Uint8Array(data as Buffer);
    try {
      return decodeMessage(bytes);
    } catch (err) {
      if (bytes.byteLength <= SEAL_BYTES) throw err;
      return decodeMessage(bytes.subarray(0, bytes.byteLength - SEAL_BYTES));
    }
  };
  const downstream = (data: RawData): RawData => {
    const type = (data as Buffer)[0];
    if (type === MessageType.Step) {
      const m = decode(data) as Step;
      hooks.onStep?.(m, relay);
      steps.push(m);
      restartIdle();
    } else if (type === MessageType.OpenSession) opened.push(decode(data) as OpenSession);
    return data;
  };
  const held: (() => void)[] = [];
  let idle: NodeJS.Timeout | undefined;
  const restartIdle = (): void => {
    if (hooks.holdReceiptsUntilIdleMs === undefined) return;
    clearTimeout(idle);
    idle = setTimeout(() => held.splice(0).forEach((send) => send()), hooks.holdReceiptsUntilIdleMs);
  };
  /** Passes a frame from the server on through `send`, now or (a delayed receipt) later. */
  const upstream = (data: RawData, send: (f: RawData) => void): void => {
    if ((data as Buffer)[0] === MessageType.SessionClosed && hooks.rewriteClosed !== undefined) {
      return send(Buffer.from(encodeMessage(hooks.rewriteClosed(decode(data) as SessionClosed))));
    }
    if ((data as Buffer)[0] !== MessageType.StepReceipt) return send(data);
    const m = decode(data) as StepReceipt;
    const f = hooks.rewriteReceipt === undefined ? data : Buffer.from(encodeMessage(hooks.rewriteReceipt(m)));
    if (hooks.holdReceiptsUntilIdleMs === undefined) return send(f);
    held.push(() => send(f));
    restartIdle();
  };

  wss.on("connection", (down) => {
    if (killed) return down.terminate();
    seen++;
    open++;
    const up = new WebSocket(target, { perMessageDeflate: false });
    sockets.push(down, up);
    const toUp: RawData[] = [];
    up.on("open", () => {
      for (const f of toUp.splice(0)) up.send(f);
    });
    up.on("error", () => down.terminate());
    down.on("error", () => up.terminate());
    up.on("close", () => down.terminate());
    down.on("close", () => {
      up.terminate();
      open--;
      if (open === 0) onAllClosed?.();
    });
    down.on("message", (data) => {
      if (frozen) return; // the step is "in flight" on the hung server
      const f = downstream(data);
      if (frozen || killed) return; // the hook froze or killed the server on this very frame
      if (up.readyState === up.OPEN) up.send(f);
      else toUp.push(f);
    });
    up.on("message", (data) => {
      if (!frozen) upstream(data, (f) => down.readyState === down.OPEN && down.send(f));
    });
  });
  const port = (wss.address() as { port: number }).port;
  const relay: FaultRelay = {
    url: `ws://127.0.0.1:${port}`,
    steps,
    opened,
    openConnections: () => open,
    allClosed: () =>
      new Promise((resolve) => {
        if (seen > 0 && open === 0) return resolve();
        onAllClosed = resolve;
      }),
    freeze: () => {
      frozen = true;
    },
    kill: () => {
      killed = true;
      for (const s of sockets) s.terminate();
    },
    close: () => {
      clearTimeout(idle);
      for (const s of sockets) s.terminate();
      return new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
  return relay;
}
