import { WebSocket, WebSocketServer } from "ws";
import { MessageType } from "../../protocol/wire.js";

/**
 * A WebSocket relay between a server and its next hop that passes frames downstream at once and
 * holds the answers coming back until `release()`: a forwarded step stays in flight on the first
 * server for as long as a test needs.
 */
export async function holdingRelay(target: string): Promise<{ url: string; held: () => number; release: () => void; close: () => Promise<void> }> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise<void>((resolve) => wss.once("listening", resolve));
  let released = false;
  const held: (() => void)[] = [];
  wss.on("connection", (down) => {
    const up = new WebSocket(target);
    const toDown: Buffer[] = [];
    up.on("open", () => {
      for (const f of toDown.splice(0)) up.send(f);
    });
    up.on("error", () => down.terminate());
    down.on("error", () => up.terminate());
    down.on("message", (data) => (up.readyState === up.OPEN ? up.send(data as Buffer) : toDown.push(data as Buffer)));
    up.on("message", (data) => {
      const send = (): void => down.send(data as Buffer);
      // the server info and the link handshake's welcome go through: the link must open
      const opening = (data as Buffer)[0] === MessageType.ServerInfo || (data as Buffer)[0] === MessageType.PeerWelcome;
      if (opening || released) send();
      else held.push(send);
    });
  });
  const port = (wss.address() as { port: number }).port;
  return {
    url: `ws://127.0.0.1:${port}`,
    held: () => held.length,
    release: () => {
      released = true;
      for (const send of held.splice(0)) send();
    },
    close: () => {
      for (const c of wss.clients) c.terminate();
      return new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
