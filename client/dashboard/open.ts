import type { FastifyInstance } from "fastify";
import { ChainWatch } from "./chainWatch.js";
import { Dashboard, type DashboardOptions } from "./dashboard.js";
import { mountDashboard } from "./routes.js";
import { loadDashboardAssets } from "./webAssets.js";

export interface OpenDashboardOptions extends DashboardOptions {
  rpcUrl: string;
  /** Deployment file (default deployments/<chainId>.json in the working directory). */
  deploymentFile?: string;
  /** Where the page is mounted (default /dashboard). */
  prefix?: string;
}

/**
 * Connects a dashboard to the chain at `rpcUrl`, mounts it on `app` (page, events, state) and
 * starts polling; closing `app` closes it. Fails, naming the problem, when the chain does not
 * answer or the deployment file is missing or for another chain.
 */
export async function attachDashboard(app: FastifyInstance, o: OpenDashboardOptions): Promise<Dashboard> {
  const assets = await loadDashboardAssets();
  const watch = await ChainWatch.connect(o.rpcUrl, o.deploymentFile);
  const dashboard = new Dashboard(watch, o);
  mountDashboard(app, dashboard, assets, o.prefix);
  app.addHook("onClose", async () => dashboard.close());
  dashboard.start();
  return dashboard;
}
