import { existsSync, readdirSync, readFileSync } from "node:fs";
import { extname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import type { build as viteBuild } from "vite";
import { DashboardError } from "./errors.js";

/** The page's sources (client/dashboard/web) and where vite builds them (gitignored). */
export const WEB_DIR = fileURLToPath(new URL("./web", import.meta.url));
export const WEB_DIST_DIR = join(WEB_DIR, "dist");

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
};

/** One built file of the page, held in memory (the whole page is tens of kilobytes). */
export interface Asset {
  contentType: string;
  body: Buffer;
}

/**
 * The built page, by path relative to the dist directory ("index.html", "assets/index-….js").
 * `npm run build` builds it; when it is missing (a fresh clone that skipped the build), it is built
 * here once with vite (about a second), offline.
 */
export async function loadDashboardAssets(distDir = WEB_DIST_DIR): Promise<Map<string, Asset>> {
  if (!existsSync(join(distDir, "index.html"))) await buildDashboardPage(distDir);
  const assets = new Map<string, Asset>();
  for (const entry of readdirSync(distDir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    assets.set(relative(distDir, path).split("\\").join("/"), { contentType: TYPES[extname(path)] ?? "application/octet-stream", body: readFileSync(path) });
  }
  return assets;
}

/** Builds the page with vite into `outDir` (vite is a devDependency: loaded only when a build is needed). */
export async function buildDashboardPage(outDir = WEB_DIST_DIR): Promise<void> {
  let build: typeof viteBuild;
  try {
    ({ build } = await import("vite"));
  } catch (cause) {
    throw new DashboardError(`the dashboard page is not built (${outDir}) and vite, which builds it, is not installed: run npm ci and npm run build`, { cause: String(cause) });
  }
  await build({ configFile: join(WEB_DIR, "vite.config.ts"), build: { outDir, emptyOutDir: true }, logLevel: "warn" });
}
