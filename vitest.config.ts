import { defineConfig } from "vitest/config";

// TypeScript tests of node/, client/, protocol/ and the CLI. Contract tests run under Hardhat
// (`npm run test:contracts`), so test/contracts is excluded here.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    exclude: ["test/contracts/**", "node_modules/**"],
    testTimeout: 60_000,
    // cleanup stops child processes (SIGTERM, then SIGKILL after 8 s) and chains: room on a loaded 2-core machine
    hookTimeout: 30_000,
  },
});
