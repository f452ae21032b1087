import { Readable } from "node:stream";
import type { ReadableStream } from "node:stream/web";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

/** Milliseconds the gateway gets to start answering (a streamed answer may then take as long as it needs). */
const CONNECT_TIMEOUT_MS = 30_000;
const PASSED_HEADERS = ["content-type", "retry-after", "x-efed-servers", "x-efed-sessions", "x-efed-cost"];

/**
 * Passes `${prefix}/*` requests (GET and POST) on to `target` and streams the answer back, so a
 * page served here reaches the gateway on its own origin. Bodies are bounded by the app's bodyLimit.
 */
export function proxyTo(app: FastifyInstance, target: string, prefix: string): void {
  const handler = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const abort = new AbortController();
    reply.raw.once("close", () => abort.abort()); // the page left: the gateway stops generating for it
    const timer = setTimeout(() => abort.abort(), CONNECT_TIMEOUT_MS);
    let answer: Response;
    try {
      answer = await fetch(`${target}${request.url}`, {
        method: request.method,
        headers: { "content-type": "application/json" },
        ...(request.method === "POST" ? { body: JSON.stringify(request.body) } : {}),
        signal: abort.signal,
      });
    } catch (err) {
      return reply.status(502).send({ error: { message: `the gateway ${target} did not answer: ${(err as Error).message}`, type: "bad_gateway" } });
    } finally {
      clearTimeout(timer);
    }
    void reply.status(answer.status);
    for (const name of PASSED_HEADERS) {
      const value = answer.headers.get(name);
      if (value !== null) void reply.header(name, value);
    }
    return reply.send(answer.body === null ? "" : Readable.fromWeb(answer.body as ReadableStream));
  };
  app.get(`${prefix}/*`, handler);
  app.post(`${prefix}/*`, handler);
}
