/**
 * A loopback TCP relay that counts what really crosses the wire between a client and a shard
 * server: TCP payload bytes in each direction, and every WebSocket frame parsed out of them
 * (after the HTTP upgrade) with its header and payload size and, for binary frames, the eFed
 * message type (the first payload byte, unmasked). Used to measure bytes, and, with a delay, to
 * stand in for a wide-area link (each chunk is passed on `delayMs` later, in order); never to
 * measure loopback timings: the relay adds a hop of its own.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from "node:net";

export interface FrameRecord {
  /** WebSocket opcode: 2 binary, 9 ping, 10 pong, 8 close … */
  opcode: number;
  /** Bytes of the frame header (including the 4-byte mask of client frames). */
  headerBytes: number;
  payloadBytes: number;
  /** First payload byte of a binary frame: the eFed MessageType. */
  messageType: number | undefined;
}

/** Parses one direction of a WebSocket connection incrementally. */
export class FrameCounter {
  tcpBytes = 0;
  frames: FrameRecord[] = [];
  private pending: Buffer = Buffer.alloc(0);
  private inHttp = true;

  feed(chunk: Buffer): void {
    this.tcpBytes += chunk.byteLength;
    this.pending = this.pending.byteLength === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    if (this.inHttp) {
      const end = this.pending.indexOf("\r\n\r\n");
      if (end === -1) return;
      this.pending = this.pending.subarray(end + 4);
      this.inHttp = false;
    }
    for (;;) {
      const b = this.pending;
      if (b.byteLength < 2) return;
      const opcode = b[0]! & 0x0f;
      const masked = (b[1]! & 0x80) !== 0;
      let length = b[1]! & 0x7f;
      let at = 2;
      if (length === 126) {
        if (b.byteLength < 4) return;
        length = b.readUInt16BE(2);
        at = 4;
      } else if (length === 127) {
        if (b.byteLength < 10) return;
        length = Number(b.readBigUInt64BE(2));
        at = 10;
      }
      const maskAt = at;
      if (masked) at += 4;
      if (b.byteLength < at + length) return;
      const messageType = opcode === 2 && length > 0 ? b[at]! ^ (masked ? b[maskAt]! : 0) : undefined;
      this.frames.push({ opcode, headerBytes: at, payloadBytes: length, messageType });
      this.pending = b.subarray(at + length);
    }
  }

  /** Forgets what was counted so far (the parser state is kept). */
  reset(): void {
    this.tcpBytes = 0;
    this.frames = [];
  }
}

/** A relay in front of one server: connect the client to `url` instead of the server's. */
export class CountingProxy {
  /** Client → server. */
  readonly up = new FrameCounter();
  /** Server → client. */
  readonly down = new FrameCounter();
  private readonly sockets = new Set<Socket>();
  private readonly server: Server;
  private port = 0;

  private constructor(
    target: URL,
    private readonly delayMs: number,
  ) {
    // timers of equal duration fire in the order they were set, so delayed chunks stay in order
    const pass = (to: Socket, d: Buffer): void => {
      if (this.delayMs === 0) to.write(d);
      else setTimeout(() => to.writable && to.write(d), this.delayMs);
    };
    this.server = createServer((client) => {
      const upstream = connect(Number(target.port), target.hostname);
      for (const s of [client, upstream]) {
        s.setNoDelay(true);
        this.sockets.add(s);
      }
      client.on("data", (d: Buffer) => {
        this.up.feed(d);
        pass(upstream, d);
      });
      upstream.on("data", (d: Buffer) => {
        this.down.feed(d);
        pass(client, d);
      });
      const end = (): void => {
        for (const s of [client, upstream]) {
          s.destroy();
          this.sockets.delete(s);
        }
      };
      for (const s of [client, upstream]) {
        s.on("close", end);
        s.on("error", end);
      }
    });
  }

  /** A relay to `targetUrl`; `delayMs` > 0 holds every chunk that long in each direction. */
  static async start(targetUrl: string, delayMs = 0): Promise<CountingProxy> {
    const proxy = new CountingProxy(new URL(targetUrl), delayMs);
    await new Promise<void>((resolve, reject) => {
      proxy.server.once("error", reject);
      proxy.server.listen(0, "127.0.0.1", () => resolve());
    });
    proxy.port = (proxy.server.address() as AddressInfo).port;
    return proxy;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  reset(): void {
    this.up.reset();
    this.down.reset();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
