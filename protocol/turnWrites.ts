import type { Writable } from "node:stream";

/**
 * Frames a process sends in one turn of its event loop (a callback and the promise continuations it
 * sets off) leave in one write per connection: a connection's socket is corked at its first frame of
 * the turn and uncorked when the turn's work is done (process.nextTick runs after the promise
 * continuations queued before it). A server answering a batch of eight sessions' decode steps, or a
 * client sending their next steps, then makes one system call per connection instead of one per
 * frame (~70–100 µs each on the machines measured); a lone frame waits only for the rest of its turn.
 *
 * Work queued with `afterTurnWrites` runs once the turn's frames have left: a server puts its receipt
 * bookkeeping there, so a batch's outputs are not held back by the hashing and signing of its receipts.
 */
const corked = new Set<Writable>();
let deferred: (() => void)[] = [];
let scheduled = false;

/** Holds the socket's writes until the end of this turn (call before writing a frame to it). */
export function holdForTurn(socket: Writable): void {
  if (!corked.has(socket)) {
    socket.cork();
    corked.add(socket);
  }
  schedule();
}

/** Runs `work` after this turn's frames are written. It must not throw: nothing is there to catch it. */
export function afterTurnWrites(work: () => void): void {
  deferred.push(work);
  schedule();
}

/** Resolves once the work deferred so far (`afterTurnWrites`) has run. */
export function turnEnded(): Promise<void> {
  return new Promise((resolve) => afterTurnWrites(resolve));
}

function schedule(): void {
  if (scheduled) return;
  scheduled = true;
  process.nextTick(endTurn);
}

function endTurn(): void {
  scheduled = false;
  for (const socket of corked) socket.uncork();
  corked.clear();
  const work = deferred;
  deferred = [];
  for (const w of work) w();
}
