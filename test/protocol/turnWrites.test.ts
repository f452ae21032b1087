import { Writable } from "node:stream";
import { setImmediate as nextMacrotask } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { afterTurnWrites, holdForTurn, turnEnded } from "../../protocol/turnWrites.js";

/** A socket stand-in that records each write it is asked to make (a writev of corked chunks is one). */
function recordingSocket(log: string[]): Writable {
  return new Writable({
    writev(chunks, done) {
      log.push(`write ${chunks.map((c) => String(c.chunk)).join("+")}`);
      done();
    },
  });
}

const endOfTurn = (): Promise<void> => nextMacrotask();

describe("turnWrites", () => {
  it("writes the frames of one turn, promise continuations included, in one write per socket, then runs the deferred work", async () => {
    const log: string[] = [];
    const a = recordingSocket(log);
    const b = recordingSocket(log);
    const send = (socket: Writable, frame: string): void => {
      holdForTurn(socket);
      socket.write(frame);
    };
    send(a, "a1");
    afterTurnWrites(() => log.push("receipts"));
    void Promise.resolve().then(() => {
      send(b, "b1");
      send(a, "a2");
    });
    await endOfTurn();
    expect(log).toEqual(["write a1+a2", "write b1", "receipts"]);
  });

  it("a frame of a later turn goes in a write of its own, and deferred work that sends holds its frames for one write", async () => {
    const log: string[] = [];
    const a = recordingSocket(log);
    holdForTurn(a);
    a.write("step 1");
    afterTurnWrites(() => {
      holdForTurn(a);
      a.write("receipt 1");
      holdForTurn(a);
      a.write("receipt 2");
    });
    await endOfTurn();
    holdForTurn(a);
    a.write("step 2");
    await endOfTurn();
    expect(log).toEqual(["write step 1", "write receipt 1+receipt 2", "write step 2"]);
    expect(a.writableCorked).toBe(0);
  });

  it("turnEnded resolves once the work deferred before it has run", async () => {
    const log: string[] = [];
    afterTurnWrites(() => log.push("attested"));
    const ended = turnEnded().then(() => log.push("ended"));
    log.push("still in the turn");
    await ended;
    expect(log).toEqual(["still in the turn", "attested", "ended"]);
  });
});
