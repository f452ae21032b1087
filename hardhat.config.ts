import { createRequire } from "node:module";
import hardhatToolboxMochaEthers from "@nomicfoundation/hardhat-toolbox-mocha-ethers";
import { defineConfig } from "hardhat/config";

// The compiler comes from the `solc` npm package (wasm), never from a download: these machines
// reach only the npm registry. Version label and binary are read from the same package so they
// cannot disagree.
const require = createRequire(import.meta.url);
const solcVersion = (require("solc/package.json") as { version: string }).version;

export default defineConfig({
  plugins: [hardhatToolboxMochaEthers],
  solidity: {
    version: solcVersion,
    path: require.resolve("solc/soljson.js"),
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: "cancun",
    },
  },
  paths: {
    tests: {
      mocha: "test/contracts",
      solidity: "test/contracts",
    },
  },
  test: {
    mocha: { timeout: 60_000 },
    solidity: {
      fuzz: { runs: 256, seed: "0x4546656420" },
      invariant: { runs: 64, depth: 32, failOnRevert: false },
    },
  },
  networks: {
    localhost: {
      type: "http",
      chainType: "l1",
      url: "http://127.0.0.1:8545",
    },
  },
});
