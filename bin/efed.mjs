#!/usr/bin/env node
// Entry point of the `efed` command: checks the Node version, registers the TypeScript loader,
// then runs the CLI.
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 22 || (major === 22 && minor < 13)) {
  console.error(
    `efed needs Node.js >= 22.13, this is ${process.version}. Run it as \`npx efed …\`: ` +
      "npm ci installs Node 22 into node_modules/.bin and npx puts it first on PATH.",
  );
  process.exit(1);
}
// Commands that load a model's weights replace their process once (same pid, same arguments) with
// the flags and environment of bin/modelProcess.mjs, which only take effect when a process starts.
const { MODEL_COMMANDS, missingModelFlags, modelProcessEnv } = await import("./modelProcess.mjs");
if (process.platform === "linux" && MODEL_COMMANDS.has(process.argv[2]) && typeof process.execve === "function") {
  const flags = missingModelFlags(process.execArgv, process.env.NODE_OPTIONS);
  const env = modelProcessEnv(process.env);
  if (flags.length > 0 || env !== undefined) {
    try {
      process.execve(process.execPath, [process.execPath, ...flags, ...process.execArgv, ...process.argv.slice(1)], env ?? process.env);
    } catch {
      // not replaced (e.g. a sandbox forbids execve): run as we are, only slower to load
    }
  }
}
// node:sqlite (the server's receipt store) is stable enough for us but still flagged experimental
// in Node 22; its one-line warning on every start would only confuse operators.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = (warning, ...rest) => {
  if (String(warning).includes("SQLite is an experimental feature")) return;
  emitWarning(warning, ...rest);
};
const { register } = await import("tsx/esm/api");
register();
const { main } = await import("./cli.ts");
process.exitCode = await main(process.argv);
