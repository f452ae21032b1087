import { Worker } from "node:worker_threads";
import { recoverAddress } from "ethers";

interface Pending {
  digest: string;
  signature: string;
  resolve: (address: string) => void;
  reject: (err: Error) => void;
}

/**
 * Recovers signers of EIP-712 digests on a worker thread. A recovery costs ~1.5 ms of JavaScript
 * elliptic-curve arithmetic, once per receipt per hop per step: on the main thread it delays the
 * client's next step; on a worker it runs beside it, on another core when the machine has one.
 * One worker per process, started on first use and unref'd (it never keeps a process alive). Until
 * the worker has loaded (a second or more on a busy machine), and if it cannot start, recovery runs
 * on the calling thread: a generation's first steps do not wait for the worker.
 */
export class SignerPool {
  private worker: Worker | undefined;
  private failed = false;
  /** The worker has loaded and answers. */
  private ready = false;
  private nextId = 0;
  private readonly pending = new Map<number, Pending>();
  private queued: { id: number; digest: string; signature: string }[] = [];

  private announceReady: (onWorker: boolean) => void = () => undefined;
  private readonly whenReady = new Promise<boolean>((resolve) => (this.announceReady = resolve));

  /**
   * Starts loading the worker now (a route's connect calls this); resolves once recoveries run on it
   * (true), or never will (false: the worker could not start or died).
   */
  start(): Promise<boolean> {
    this.ensureWorker();
    return this.whenReady;
  }

  /** The address that signed `digest` (a 32-byte hex hash) with `signature`. */
  recover(digest: string, signature: string): Promise<string> {
    const worker = this.ensureWorker();
    if (worker === undefined || !this.ready) {
      try {
        return Promise.resolve(recoverAddress(digest, signature));
      } catch (err) {
        return Promise.reject(err as Error);
      }
    }
    const id = this.nextId++;
    // requests made in the same turn travel in one message
    if (this.queued.length === 0) queueMicrotask(() => this.flush());
    this.queued.push({ id, digest, signature });
    return new Promise((resolve, reject) => this.pending.set(id, { digest, signature, resolve, reject }));
  }

  private flush(): void {
    const batch = this.queued;
    this.queued = [];
    if (batch.length === 0) return;
    if (this.worker === undefined) {
      for (const { id, digest, signature } of batch) this.settle({ id, ...this.recoverHere(digest, signature) });
      return;
    }
    this.worker.ref(); // answers are awaited: keep the process alive until they come
    this.worker.postMessage(batch);
  }

  private recoverHere(digest: string, signature: string): { address?: string; error?: string } {
    try {
      return { address: recoverAddress(digest, signature) };
    } catch (err) {
      return { error: (err as Error).message };
    }
  }

  private settle(r: { id: number; address?: string; error?: string }): void {
    const p = this.pending.get(r.id);
    if (p === undefined) return;
    this.pending.delete(r.id);
    if (r.address !== undefined) p.resolve(r.address);
    else p.reject(new Error(r.error ?? "signature recovery failed"));
  }

  private ensureWorker(): Worker | undefined {
    if (this.worker !== undefined || this.failed) return this.worker;
    try {
      const worker = new Worker(new URL("./signerWorker.mjs", import.meta.url));
      worker.on("message", (results: "ready" | { id: number; address?: string; error?: string }[]) => {
        if (results === "ready") {
          this.ready = true;
          this.announceReady(true);
          return;
        }
        for (const r of results) this.settle(r);
        if (this.pending.size === 0) worker.unref();
      });
      worker.on("error", () => this.abandon());
      worker.on("exit", () => this.abandon());
      worker.unref();
      this.worker = worker;
    } catch {
      this.failed = true;
      this.announceReady(false);
    }
    return this.worker;
  }

  /** The worker died: what it held is recovered here, and so is everything after. */
  private abandon(): void {
    if (this.worker === undefined) return;
    this.worker = undefined;
    this.failed = true;
    this.ready = false;
    this.announceReady(false);
    for (const [id, p] of [...this.pending]) this.settle({ id, ...this.recoverHere(p.digest, p.signature) });
  }
}

/** The process's pool. */
export const signerPool = new SignerPool();
