import { Wallet, ZeroAddress, hexlify, randomBytes, type HDNodeWallet } from "ethers";
import { WebSocketServer, type WebSocket } from "ws";
import { InboundPeer } from "../../node/server/inboundPeer.js";
import { MessageType, PROTOCOL_VERSION, decodeMessage, encodeMessage, type Message, type ServerInfo } from "../../protocol/wire.js";

/** A ServerInfo for layers 4:8 of a made-up variant; override what a test needs. */
export function serverInfo(overrides: Partial<ServerInfo> = {}): ServerInfo {
  return {
    type: MessageType.ServerInfo,
    requestId: 0,
    protocolVersion: PROTOCOL_VERSION,
    chainId: 31337n,
    server: Wallet.createRandom().address,
    variantId: "0x" + "cd".repeat(32),
    firstLayer: 4,
    lastLayer: 8,
    hiddenSize: 8,
    maxSessions: 4,
    maxSessionTokens: 16,
    maxStepTokens: 16,
    maxFrameBytes: 4096,
    pricePerToken: 0n,
    commitments: ZeroAddress,
    challenge: hexlify(randomBytes(32)),
    creditSteps: 0,
    signEvery: 1,
    ...overrides,
  };
}

export interface FakeServer {
  url: string;
  wss: WebSocketServer;
  close(): Promise<void>;
}

/**
 * A WebSocket server on 127.0.0.1 that says `hello` (a ServerInfo by default; raw bytes as given)
 * on each connection and hands every parsed frame to `onMessage`. `autoPong: false` makes it a
 * peer that never answers pings (hung).
 */
export async function fakeServer(
  onMessage: (ws: WebSocket, m: Message) => void = () => undefined,
  o: { hello?: ServerInfo | Uint8Array | undefined; autoPong?: boolean } = {},
): Promise<FakeServer> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, autoPong: o.autoPong ?? true });
  await new Promise<void>((resolve) => wss.once("listening", resolve));
  wss.on("connection", (ws) => {
    ws.on("error", () => undefined);
    ws.on("message", (data) => onMessage(ws, decodeMessage(data as Buffer)));
    const hello = o.hello ?? serverInfo();
    ws.send(hello instanceof Uint8Array ? hello : encodeMessage(hello));
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}`,
    wss,
    close: () => {
      for (const c of wss.clients) c.terminate();
      return new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

/** Sends `m` on `ws`. */
export function reply(ws: WebSocket, m: Message): void {
  ws.send(encodeMessage(m));
}

/**
 * A next hop that authenticates server links like a shard server (node/server/inboundPeer.ts) and
 * then never answers a step: what a hung or malicious peer looks like to the forwarding server.
 * `welcomeBy` signs the welcome with another key than the announced address's (an impostor).
 */
export async function silentPeer(o: { info?: Partial<ServerInfo>; welcomeBy?: HDNodeWallet } = {}): Promise<FakeServer & { steps: () => number }> {
  const me = Wallet.createRandom();
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise<void>((resolve) => wss.once("listening", resolve));
  let steps = 0;
  wss.on("connection", (ws) => {
    const peer = new InboundPeer({ signingKey: (o.welcomeBy ?? me).signingKey, address: me.address }, hexlify(randomBytes(32)));
    ws.on("error", () => undefined);
    ws.on("message", (data) => {
      let m: Message;
      try {
        m = decodeMessage(peer.open(data as Buffer));
      } catch {
        return ws.close(1008, "link MAC mismatch"); // as a shard server does
      }
      if (m.type === MessageType.PeerHello) reply(ws, peer.welcome(m));
      if (m.type === MessageType.Step) steps++;
    });
    reply(ws, serverInfo({ server: me.address, challenge: peer.challenge, ...o.info }));
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}`,
    wss,
    steps: () => steps,
    close: () => {
      for (const c of wss.clients) c.terminate();
      return new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
