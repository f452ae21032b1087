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
