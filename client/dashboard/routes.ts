import type { FastifyInstance } from "fastify";
import type { Dashboard } from "./dashboard.js";
import type { Asset } from "./webAssets.js";

/** Milliseconds between SSE comments that keep idle proxies from closing the stream. */
const HEARTBEAT_MS = 15_000;
const TX_HASH = /^0x[0-9a-fA-F]{64}$/;

/**
 * Mounts the dashboard on `app` under `prefix` (e.g. "/dashboard"): the page at `${prefix}/`, its
 * files, `${prefix}/events` (server-sent events: history, then snapshots and plot points),
 * `${prefix}/state` (the latest snapshot as JSON) and `${prefix}/tx/:hash` (a transaction and its
 * receipt, what the page's transaction links open).
 */
export function mountDashboard(app: FastifyInstance, dashboard: Dashboard, assets: ReadonlyMap<string, Asset>, prefix = "/dashboard"): void {
  const index = assets.get("index.html");
  if (index === undefined) throw new Error("the dashboard page has no index.html: run npm run build");
  app.get(prefix, (_request, reply) => reply.redirect(`${prefix}/`));
  app.get(`${prefix}/`, (_request, reply) => reply.type(index.contentType).send(index.body));
  app.get<{ Params: { "*": string } }>(`${prefix}/assets/*`, (request, reply) => {
    const asset = assets.get(`assets/${request.params["*"]}`);
    if (asset === undefined) return reply.status(404).type("text/plain").send(`no dashboard file assets/${request.params["*"]}`);
    return reply.type(asset.contentType).header("cache-control", "public, max-age=31536000, immutable").send(asset.body);
  });

  app.get(`${prefix}/state`, (_request, reply) => {
    const s = dashboard.snapshot();
    return s === undefined ? reply.status(503).send({ error: "the dashboard has not read the chain yet" }) : reply.send(s);
  });

  app.get<{ Params: { hash: string } }>(`${prefix}/tx/:hash`, async (request, reply) => {
    const { hash } = request.params;
    if (!TX_HASH.test(hash)) return reply.status(400).send({ error: `"${hash.slice(0, 80)}" is not a transaction hash (0x and 64 hex digits)` });
    const tx = await dashboard.watch.transaction(hash);
    return tx === null ? reply.status(404).send({ error: `no transaction ${hash} on this chain` }) : reply.send(tx);
  });

  // open streams end before the server closes: a hijacked response would otherwise hold app.close()
  const streams = new Set<() => void>();
  app.addHook("preClose", (done) => {
    for (const end of [...streams]) end();
    done();
  });
  app.get(`${prefix}/events`, (_request, reply) => {
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive" });
    const off = dashboard.subscribe((e) => raw.write(`data: ${JSON.stringify(e)}\n\n`));
    if (off === undefined) {
      raw.end(`event: refused\ndata: ${JSON.stringify({ error: "too many dashboard pages are open" })}\n\n`);
      return;
    }
    const heartbeat = setInterval(() => raw.write(": alive\n\n"), HEARTBEAT_MS);
    const end = (): void => {
      clearInterval(heartbeat);
      off();
      streams.delete(end);
      if (!raw.writableEnded) raw.end();
    };
    raw.once("close", end);
    raw.on("error", end);
    streams.add(end);
  });
}
