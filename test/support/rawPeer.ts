import { WebSocket } from "ws";
import { decodeMessage, type Message, type ServerInfo } from "../../protocol/wire.js";

/**
 * A raw WebSocket peer of a shard server, for tests that speak the protocol frame by frame (or break
 * it). `send` waits for the next frame the server sends back (or the close). `localAddress` binds
 * the socket to another loopback address (127.0.0.2, …), so per-address limits and fairness see a
 * different client.
 */
export class RawPeer {
  private readonly queue: ((m: Message | "closed") => void)[] = [];
  /** Frames that arrived with nobody waiting for them. */
  readonly unsolicited: Message[] = [];
  closed = false;
  closeCode: number | undefined;
  closeReason = "";
  info!: ServerInfo;

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data) => {
      const m = decodeMessage(data as Buffer);
      const waiter = this.queue.shift();
      if (waiter === undefined) this.unsolicited.push(m);
      else waiter(m);
    });
    ws.on("close", (code, reason) => {
      this.closed = true;
      this.closeCode = code;
      this.closeReason = reason.toString();
      for (const q of this.queue.splice(0)) q("closed");
    });
    ws.on("error", () => {});
  }

  /** Connects and reads the first frame (the server info, or the error that refuses the connection). */
  static async open(url: string, options: { localAddress?: string } = {}): Promise<RawPeer> {
    const ws = new WebSocket(url, { perMessageDeflate: false, ...options });
    const peer = new RawPeer(ws);
    const first = await peer.next();
    if (first !== "closed" && first.type === 1) peer.info = first;
    else if (first !== "closed") peer.unsolicited.push(first);
    return peer;
  }

  /** The next frame from the server (or "closed"). */
  next(): Promise<Message | "closed"> {
    if (this.unsolicited.length > 0) return Promise.resolve(this.unsolicited.shift()!);
    if (this.closed) return Promise.resolve("closed");
    return new Promise((resolve) => this.queue.push(resolve));
  }

  /** Sends a frame and waits for the next frame back. */
  send(frame: Uint8Array | string): Promise<Message | "closed"> {
    if (this.closed) return Promise.resolve("closed");
    const reply = this.next();
    this.ws.send(frame);
    return reply;
  }

  /** Sends without waiting for anything. */
  push(frame: Uint8Array): void {
    this.ws.send(frame);
  }

  /** Resolves once the server has closed the connection. */
  whenClosed(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => this.ws.once("close", () => resolve()));
  }

  close(): void {
    this.ws.close();
  }
}
