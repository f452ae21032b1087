// Recovers the signer address of (digest, signature) pairs off the client's main thread (see
// client/signerPool.ts). Plain JavaScript so a worker thread can load it without a TypeScript loader.
import { parentPort } from "node:worker_threads";
import { recoverAddress } from "ethers";

parentPort.on("message", (batch) => {
  parentPort.postMessage(
    batch.map(({ id, digest, signature }) => {
      try {
        return { id, address: recoverAddress(digest, signature) };
      } catch (err) {
        return { id, error: err instanceof Error ? err.message : String(err) };
      }
    }),
  );
});
// the pool recovers on its own thread until this arrives
parentPort.postMessage("ready");
