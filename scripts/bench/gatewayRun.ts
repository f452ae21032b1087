/**
 * Standalone run of the gateway measurements (scripts/bench/lib/gatewayBench.ts): layers in this
 * process, then on a route of two `efed server` processes. Prints markdown tables; writes nothing.
 * Run: npx tsx scripts/bench/gatewayRun.ts
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RemotePipeline } from "../../client/remotePipeline.js";
import { GATEWAY_OVERHEAD_HEADER, GATEWAY_STREAMS_HEADER, SHIPPED_MODEL, measureGateway } from "./lib/gatewayBench.js";
import { REPO_ROOT } from "./lib/benchModels.js";
import { markdownTable } from "./lib/markdown.js";
import { startServer, stopServers, type RunningServer } from "./lib/networkServers.js";

const overhead: string[][] = [];
const streams: string[][] = [];
const local = await measureGateway({ modelDir: SHIPPED_MODEL });
overhead.push(...local.overhead);
streams.push(...local.streams);
console.error(markdownTable(GATEWAY_OVERHEAD_HEADER, overhead));
console.error(markdownTable(GATEWAY_STREAMS_HEADER, streams));

// the servers' key files go to a scratch directory, not into the checkout (they inherit the environment)
const storeDir = mkdtempSync(join(tmpdir(), "efed-gwbench-"));
process.env.EFED_DATA_DIR = storeDir;
let servers: RunningServer[] = [];
try {
  servers = [await startServer(REPO_ROOT, SHIPPED_MODEL, 0, 4, storeDir), await startServer(REPO_ROOT, SHIPPED_MODEL, 4, 8, storeDir)];
  const route = await measureGateway({
    modelDir: SHIPPED_MODEL,
    label: "route of 2 servers",
    openLayers: async (model) => {
      const pipeline = await RemotePipeline.connect(
        servers.map((s) => s.url),
        model.config.numLayers,
      );
      return { pipeline, servers: servers.map((s) => s.url), close: async () => pipeline.close() };
    },
  });
  overhead.push(...route.overhead);
  streams.push(...route.streams);
} finally {
  await stopServers(servers);
  rmSync(storeDir, { recursive: true, force: true });
}
console.log(markdownTable(GATEWAY_OVERHEAD_HEADER, overhead, ["left", "left", "right", "right", "right", "right"]));
console.log();
console.log(markdownTable(GATEWAY_STREAMS_HEADER, streams, ["left", "right", "right", "right", "right"]));
