import { Command, InvalidArgumentError } from "commander";
import { integer } from "./options.js";

interface DashboardFlags {
  rpc: string;
  deployment?: string;
  gateway?: string;
  port: number;
  host: string;
  pollIntervalMs: number;
  measureIntervalMs: number;
}

/** Bytes of a chat request the dashboard passes on to the gateway at most. */
const PROXY_BODY_LIMIT_BYTES = 1024 * 1024;

function httpUrl(value: string): string {
  if (!/^https?:\/\/[^\s/]+/.test(value)) throw new InvalidArgumentError(`"${value}" is not an http:// or https:// URL.`);
  return value.replace(/\/+$/, "");
}

/**
 * `efed dashboard`: the live dashboard of a deployment on its own port (the gateway serves the same
 * page with `efed gateway --dashboard`). With --gateway, the page's chat box talks to that gateway
 * through this server (/v1/* is passed on), so the page needs no cross-origin access.
 */
export function dashboardCommand(): Command {
  return new Command("dashboard")
    .description("serve a live web dashboard of the network: coverage, stakes, trust, work, payments, disputes")
    .requiredOption("--rpc <url>", "JSON-RPC URL of the chain")
    .option("--deployment <file>", "the deployment file (default deployments/<chainId>.json in the working directory)")
    .option("--gateway <url>", "an efed gateway (http://host:port) the chat box talks to", httpUrl)
    .option("--port <port>", "TCP port to listen on (0: any free port)", integer(0, 65535), 8090)
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--poll-interval-ms <ms>", "time between reads of the chain", integer(100, 3_600_000), 2_000)
    .option("--measure-interval-ms <ms>", "time between measurements of the servers (0: never)", integer(0, 3_600_000), 15_000)
    .action(async (flags: DashboardFlags) => {
      const gateway = flags.gateway;
      const { default: Fastify } = await import("fastify");
      const { attachDashboard } = await import("../dashboard/open.js");
      const app = Fastify({ bodyLimit: PROXY_BODY_LIMIT_BYTES });
      try {
        await attachDashboard(app, {
          rpcUrl: flags.rpc,
          ...(flags.deployment === undefined ? {} : { deploymentFile: flags.deployment }),
          pollIntervalMs: flags.pollIntervalMs,
          measureIntervalMs: flags.measureIntervalMs,
        });
        app.get("/", (_request, reply) => reply.redirect("/dashboard/"));
        if (gateway !== undefined) {
          const { proxyTo } = await import("../dashboard/proxy.js");
          proxyTo(app, gateway, "/v1");
        }
        const url = await app.listen({ port: flags.port, host: flags.host });
        console.log(JSON.stringify({ event: "listening", url, dashboard: `${url}/dashboard/`, ...(gateway === undefined ? {} : { gateway }) }));
        await new Promise<void>((done) => {
          process.once("SIGINT", done);
          process.once("SIGTERM", done);
        });
      } finally {
        await app.close();
      }
    });
}
