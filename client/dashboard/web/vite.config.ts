import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// The dashboard page: preact + uPlot, built offline into ./dist (gitignored). `base: "./"` keeps
// every URL relative, so the page works wherever it is mounted (/dashboard/ on the gateway).
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "./",
  logLevel: "warn",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: { outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 300 },
});
