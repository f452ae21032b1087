import { Worker } from "node:worker_threads";

/**
 * Memory bandwidth of this machine as a copy benchmark: `workers` threads each copy their own
 * 128 MiB buffer repeatedly; bandwidth counts bytes read plus bytes written. Best of `rounds`.
 */
export async function copyBandwidth(workers: number, rounds = 5): Promise<number> {
  const code = `
    const { parentPort, workerData } = require("node:worker_threads");
    const n = workerData.bytes / 8;
    const src = new Float64Array(n).fill(1.5);
    const dst = new Float64Array(n);
    dst.set(src); // touch every page first
    parentPort.on("message", () => {
      const t0 = process.hrtime.bigint();
      dst.set(src);
      parentPort.postMessage(Number(process.hrtime.bigint() - t0));
    });
    parentPort.postMessage(0);
  `;
  const bytes = 128 * 1024 * 1024;
  const threads = Array.from({ length: workers }, () => new Worker(code, { eval: true, workerData: { bytes } }));
  const next = (w: Worker): Promise<number> => new Promise((resolve) => w.once("message", resolve));
  await Promise.all(threads.map(next)); // ready
  let best = 0;
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    const done = Promise.all(threads.map(next));
    for (const w of threads) w.postMessage("go");
    await done;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    best = Math.max(best, (2 * bytes * workers) / seconds);
  }
  await Promise.all(threads.map((w) => w.terminate()));
  return best;
}
