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
// Commands that load a model's weights run with glibc's malloc backing its large allocations by
// transparent huge pages, so ONNX Runtime's copy of the weights (and the arrays it is built from)
// faults in 2 MiB at a time: on a VM a 4 KiB page fault costs ~15 µs, and a 1 GB shard loaded in
// 5.6 s instead of 8.1. glibc reads its tunables only when a process starts, so the process replaces
// itself once with them set (same pid, same arguments). EFED_HUGEPAGES=0 keeps the default.
const MODEL_COMMANDS = new Set(["server", "verifier", "generate", "chat", "gateway", "compress", "convert", "eval"]);
const tunables = process.env.GLIBC_TUNABLES ?? "";
if (
  process.platform === "linux" &&
  MODEL_COMMANDS.has(process.argv[2]) &&
  process.env.EFED_HUGEPAGES !== "0" &&
  !tunables.includes("glibc.malloc.hugetlb") &&
  typeof process.execve === "function"
) {
  const env = { ...process.env, GLIBC_TUNABLES: tunables === "" ? "glibc.malloc.hugetlb=1" : `${tunables}:glibc.malloc.hugetlb=1` };
  try {
    process.execve(process.execPath, [process.execPath, ...process.execArgv, ...process.argv.slice(1)], env);
  } catch {
    // not replaced (e.g. a sandbox forbids execve): run as we are, only slower to load
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
