// Entry point of `npm start`: checks what `npm ci` and `npm run build` provide (a clear message, not
// a stack trace, when they are missing), then runs the devnet (scripts/devnet/main.ts) with the
// TypeScript loader. Plain JavaScript: it must run before anything is known to be installed.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
const [major, minor] = process.versions.node.split(".").map(Number);
if (!existsSync(`${root}node_modules/tsx/package.json`) || !existsSync(`${root}node_modules/hardhat/package.json`)) {
  console.error("npm start: the dependencies are not installed (no node_modules/tsx or node_modules/hardhat): run `npm ci` first, then `npm start`.");
  process.exit(1);
}
if (major < 22 || (major === 22 && minor < 13)) {
  console.error(`npm start needs Node.js >= 22.13, this is ${process.version}: run it as \`npm start\` (npm ci puts Node 22 in node_modules/.bin, first on npm's PATH).`);
  process.exit(1);
}
if (!existsSync(`${root}types/ethers-contracts/index.ts`)) {
  console.log("npm start: the contract types (types/) are not built yet: running `npm run build` once (about 20 s)…");
  const build = spawnSync(process.execPath, [`${root}node_modules/hardhat/dist/src/cli.js`, "build"], {
    cwd: root,
    stdio: "inherit",
    env: { ...process.env, CI: "true", HARDHAT_DISABLE_TELEMETRY: "true", HARDHAT_DISABLE_TELEMETRY_PROMPT: "true" },
  });
  if (build.status !== 0) {
    console.error("npm start: `npm run build` failed (its output is above): fix that, then `npm start` again.");
    process.exit(1);
  }
}
const { register } = await import("tsx/esm/api");
register();
const { main } = await import("./main.ts");
// the entry point chooses the exit: once stopped, nothing of the devnet is left to wait for
process.exit(await main(process.argv));
