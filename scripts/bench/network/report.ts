/** bench:network's report: the tables of the parts measured, as markdown. */
import { cpus } from "node:os";
import { secp256k1 } from "../../../protocol/secp256k1.js";
import { fmtInt, markdownTable } from "../lib/markdown.js";
import { AGREEMENT_TOKENS, BYTE_STEPS, WAN_DELAY_MS, WAN_STEPS, type HopCpu, type ModelResult, type Part } from "./types.js";

const pct = (x: number): string => `${(100 * x).toFixed(0)}%`;

/** The markdown of the parts measured (`parts`): the section bench:network writes into docs/benchmarks.md. */
export function report(results: ModelResult[], hop: Map<number, HopCpu>, meta: { seconds: number; loadStart: number[]; loadEnd: number[] }, parts: ReadonlySet<Part>): string {
  const out: string[] = [];
  const cpu = cpus();
  out.push(
    `Machine: ${cpu.length} × ${cpu[0]?.model ?? "unknown CPU"}; load average ${meta.loadStart.map((x) => x.toFixed(1)).join(" / ")} ` +
      `(1/5/15 min) at the start, ${meta.loadEnd.map((x) => x.toFixed(1)).join(" / ")} at the end; the run took ${(meta.seconds / 60).toFixed(1)} min.`,
    "Every server is its own `efed server` process on 127.0.0.1 (1 intra-op thread, receipt chains signed and steps stored in SQLite as in",
    "production); the client (embedding, LM head, receipt checks) runs in the benchmark process with 1 thread. A decode step",
    "is timed as the client sees it: embed → every hop in turn → LM head → argmax. Baseline and routes run in interleaved",
    "rounds and are compared by median step time.",
    "",
  );

  if (parts.has("hop")) speedSection(out, results);
  if (parts.has("cpu")) cpuSection(out, results, hop);
  if (parts.has("bytes")) bytesSection(out, results);
  const shipped = results.find((r) => r.plan.agreement);
  if (shipped !== undefined && parts.has("agreement")) agreementSection(out, shipped);
  const wanModel = results.find((r) => r.wan.length > 0);
  if (wanModel !== undefined && parts.has("wan")) wanSection(out, wanModel);
  if (parts.has("concurrency")) concurrencySection(out, results);
  return out.join("\n");
}

/** Lowest–highest over the rounds of (route's round median − baseline's round median) ÷ hops. */
function roundRange(route: readonly number[], base: readonly number[], hops: number): string {
  const perHop = route.map((ms, r) => (ms - base[r]!) / hops);
  return `${Math.min(...perHop).toFixed(2)}–${Math.max(...perHop).toFixed(2)}`;
}

function speedSection(out: string[], results: ModelResult[]): void {
  out.push("### Decode through a route (fp32 on the wire)", "");
  const speedRows: string[][] = [];
  for (const r of results) {
    const base = r.speed.find((s) => s.hops === 0)!;
    for (const s of r.speed) {
      const ratio = base.medianStepMs / s.medianStepMs;
      const goal = s.hops === 2 ? 0.95 : s.hops === 4 ? 0.9 : undefined; // issue 13: 2 / 4 servers ≥ 95% / 90% of one process
      const perHop = s.hops === 0 ? "—" : ((s.medianStepMs - base.medianStepMs) / s.hops).toFixed(2);
      const receiptLag = s.mode === "relay" ? s.medianReceiptLagMs.toFixed(2) : "—";
      // only relayed steps report their timing (ShardConnection onStepTiming): a hop splits into server and client time
      const split = s.mode === "relay";
      const inServer = split ? ((s.medianRoundTripMs - base.medianForwardMs) / s.hops).toFixed(2) : "—";
      const inClient = split ? ((s.medianForwardMs - s.medianRoundTripMs) / s.hops).toFixed(2) : "—";
      const servers = (): string => `${s.hops} server${s.hops > 1 ? "s" : ""} (${r.splits[s.hops]!.map(([a, b]) => `${a}:${b}`).join(", ")})`;
      speedRows.push([
        r.plan.label,
        s.hops === 0 ? "single process (baseline)" : `${servers()}, ${s.mode === "forward" ? "**forwarded**" : "relayed"}`,
        s.medianStepMs.toFixed(2),
        (1000 / s.medianStepMs).toFixed(1),
        s.hops === 0 ? "100%" : `**${pct(ratio)}**${goal === undefined ? "" : ratio >= goal ? ` (goal ≥ ${pct(goal)}: met)` : ` (goal ≥ ${pct(goal)}: missed)`}`,
        s.hops === 0 ? "—" : `**${perHop}** (${Number(perHop) <= 1 ? "met" : "missed"}; rounds ${roundRange(s.roundStepMs, base.roundStepMs, s.hops)})`,
        inServer,
        inClient,
        receiptLag,
        String(s.steps),
      ]);
    }
  }
  out.push(
    markdownTable(
      [
        "model",
        "layers served by",
        "median step ms",
        "decode tok/s",
        "% of single process",
        "added ms per hop (goal ≤ 1)",
        "per hop: server round trip beyond the layers ms",
        "per hop: client side ms",
        "per hop: result → receipt ms",
        "steps timed",
      ],
      speedRows,
      ["left", "left", "right", "right", "right", "right", "right", "right", "right", "right"],
    ),
    "",
    "Added ms per hop = (median route step − median single-process step) ÷ number of servers; \"rounds\" gives the lowest and",
    "highest of the same within one interleaved round (how far this machine's noise moves it; the medians over all rounds'",
    "steps may fall outside it, as a difference of medians is not a median of differences). **Relayed**: each hop is a",
    "client → server → client round trip. **Forwarded**: the client sends the step to the first server with the rest of the",
    "route, each server sends its output to the next, the last one sends it to the client (k + 1 messages on the critical",
    "path instead of 2k); receipts still go from every server to the client directly. A relayed hop is split, by timing the",
    "client's step timings (ShardConnection's onStepTiming: step sent → result parsed), into the time inside the servers'",
    "round trips beyond the layers' own compute (median round-trip time − median single-process layer time, ÷ servers:",
    "wire, frame parsing, the server's scheduling and its engine run) and the client's own work per hop (median route",
    "forward − median round-trip time, ÷ servers: encoding, hashes, receipt checks). Result → receipt: how long after its",
    "result a hop's receipt arrives (the server hashes, signs and stores the step after sending the result; 0 when both",
    "came in one read). Medians of parts do not add up exactly to the median of the whole.",
    "",
  );
}

function cpuSection(out: string[], results: ModelResult[], hop: Map<number, HopCpu>): void {
  out.push("### CPU per hop outside the layers (one fp32 decode token, measured in-process)", "");
  const hopRows: string[][] = [];
  for (const r of results) {
    const h = hop.get(r.hiddenSize)!;
    const total = h.frames + h.hashes + h.leaves + h.sign + h.recover + h.store;
    const measured = r.speed.filter((s) => s.mode === "relay").map((s) => (s.medianStepMs - r.speed[0]!.medianStepMs) / s.hops);
    const range = measured.length === 0 ? "—" : `${Math.min(...measured).toFixed(2)}–${Math.max(...measured).toFixed(2)}`;
    hopRows.push([
      `${r.plan.label} (hidden ${r.hiddenSize})`,
      h.frames.toFixed(0),
      h.hashes.toFixed(0),
      h.leaves.toFixed(0),
      h.sign.toFixed(0),
      h.recover.toFixed(0),
      h.store.toFixed(0),
      (total / 1000).toFixed(2),
      r.speed.length === 0 ? "—" : r.echoMs.toFixed(2),
      r.speed.length === 0 ? "—" : `**${(total / 1000 + r.echoMs).toFixed(2)}**`,
      range,
    ]);
  }
  out.push(
    markdownTable(
      [
        "model",
        "frames encode+decode µs",
        "4 activation hashes µs",
        "receipt leaf + chain, both sides µs",
        `server: sign chain ÷ ${[...hop.values()][0]?.signEvery ?? "K"} µs`,
        `client: recover signer ÷ ${[...hop.values()][0]?.signEvery ?? "K"} µs`,
        "server: SQLite put per step µs",
        "CPU sum ms",
        "echo round trip ms",
        "CPU + echo ms",
        "measured added ms per hop",
      ],
      hopRows,
      ["left", "right", "right", "right", "right", "right", "right", "right", "right", "right", "right"],
    ),
    "",
    "What a hop adds besides its layers, one item at a time with the functions the client and server call (median µs,",
    "fp32 decode row): both frames encoded and parsed, the activation hashes (the server's receipt and the client's check),",
    "the receipt's leaf and its step of the session's receipt chain (server and client), the server's ECDSA signature over",
    `the chain and the client's recovery of it (digest included; ${secp256k1.backend === "native" ? "libsecp256k1" : "ethers, the native binding did not load"}) and the server's SQLite insert`,
    "of the step (a run's steps in one transaction), these three per step of a run of the servers' default `--sign-every`. The",
    "echo round trip is a same-sized binary WebSocket message to a bare `ws` echo process and back (median, measured between",
    "the speed rounds): the floor of any hop on this machine. The measured range is over the relayed 1-, 2- and 4-server routes.",
    "",
  );
}

function bytesSection(out: string[], results: ModelResult[]): void {
  out.push("### Bytes on the wire per decode token per hop", "");
  const byteRows: string[][] = [];
  for (const r of results) {
    const fp32 = r.bytes.find((b) => b.encoding === "fp32")!;
    for (const b of r.bytes) {
      const frames = b.stepFrame + b.resultFrame + b.receiptFrame;
      byteRows.push([
        `${r.plan.label} (hidden ${r.hiddenSize})`,
        b.encoding,
        fmtInt(b.stepFrame),
        fmtInt(b.resultFrame),
        fmtInt(b.receiptFrame),
        fmtInt(frames),
        fmtInt(b.wsHeaders),
        `**${fmtInt(b.tcpPerTokenPerHop)}**`,
        fmtInt(b.payload),
        pct(b.tcpPerTokenPerHop / fp32.tcpPerTokenPerHop),
      ]);
    }
  }
  out.push(
    markdownTable(
      [
        "model",
        "encoding",
        "Step frame B",
        "StepResult frame B",
        "StepReceipt frame B",
        "all frames B",
        "WebSocket headers B",
        "TCP payload B (both ways)",
        "of which activations B",
        "vs fp32",
      ],
      byteRows,
      ["left", "left", "right", "right", "right", "right", "right", "right", "right", "right"],
    ),
    "",
    `Counted by a relay between the client and each server of a 2-server route that parses the WebSocket frames on the`,
    `TCP stream, over ${BYTE_STEPS} decode steps after the prefill; per hop and token = counted ÷ (steps × servers). The Step`,
    "frame carries a 32-byte session id, step, position and encodings besides the activations; the StepReceipt frame that",
    "follows each StepResult carries the hop's receipt (server address, layer range, 65-byte signature). IP/TCP headers are",
    "not included.",
    "",
  );

}

function agreementSection(out: string[], shipped: ModelResult): void {
  {
    out.push("### fp16 / int8 activations: greedy token agreement with fp32 (shipped model)", "");
    out.push(
      markdownTable(
        ["encoding", "positions", "same argmax as fp32", "agreement (goal ≥ 99%)"],
        shipped.agreement.map((a) => [
          a.encoding,
          String(a.positions),
          String(a.matches),
          `**${((100 * a.matches) / a.positions).toFixed(1)}%** (${a.matches / a.positions >= 0.99 ? "met" : "missed"})`,
        ]),
        ["left", "right", "right", "right"],
      ),
      "",
      `Teacher-forced: the fp32 route (2 servers) generates ${AGREEMENT_TOKENS} greedy tokens for each of ${shipped.agreement[0]?.positions !== undefined ? shipped.agreement[0].positions / AGREEMENT_TOKENS : 0} prompts;`,
      "the fp16 / int8 route is then fed the same prompt and the same reference tokens, and its argmax at every position is",
      "compared with the reference token (so one disagreement does not derail the rest).",
      `The fp32 route ${shipped.fp32RouteExact ? "reproduced" : "did NOT reproduce"} the single-process greedy tokens exactly.`,
      "",
    );
  }

}

function wanSection(out: string[], wanModel: ModelResult): void {
  {
    out.push(`### Relayed against forwarded over ${WAN_DELAY_MS} ms links (simulated wide area, ${wanModel.plan.label})`, "");
    out.push(
      markdownTable(
        ["servers", "relayed step ms", "forwarded step ms", "saved ms", "expected saving (k − 1) × d ms"],
        wanModel.wan.map((w) => [
          String(w.hops),
          w.relayedMs.toFixed(1),
          w.forwardedMs.toFixed(1),
          `**${(w.relayedMs - w.forwardedMs).toFixed(1)}**`,
          String((w.hops - 1) * WAN_DELAY_MS),
        ]),
        ["right", "right", "right", "right", "right"],
      ),
      "",
      `Every server sits behind a relay that holds each chunk ${WAN_DELAY_MS} ms in each direction (d); the client and the`,
      "forwarding servers both reach a server through its relay. A relayed step crosses 2k links (to and from each server),",
      "a forwarded one k + 1 (client → first, server → server, last → client), so forwarding should save (k − 1) × d per",
      `step. Median of ${WAN_STEPS} decode steps after a warm-up, fp32.`,
      "",
    );
  }

}

function concurrencySection(out: string[], results: ModelResult[]): void {
  const cpu = cpus();
  out.push("### Concurrent sessions through a 2-server route (fp32, forwarded)", "");
  const concRows: string[][] = [];
  for (const r of results) {
    const one = r.concurrency.find((c) => c.sessions === 1)!;
    for (const c of r.concurrency) {
      const ratio = c.tokensPerSecond / one.tokensPerSecond;
      concRows.push([
        r.plan.label,
        String(c.sessions),
        String(r.plan.concurrentTokens),
        c.tokensPerSecond.toFixed(1),
        (c.tokensPerSecond / c.sessions).toFixed(1),
        c.sessions === 1 ? "1.00×" : `**${ratio.toFixed(2)}×**${c.sessions === 8 ? ` (goal ≥ 3×: ${ratio >= 3 ? "met" : "missed"})` : ""}`,
      ]);
    }
  }
  out.push(
    markdownTable(
      ["model", "sessions", "tokens per session", "total tok/s", "tok/s per session", "vs 1 session"],
      concRows,
      ["left", "right", "right", "right", "right", "right"],
    ),
    "",
    "Concurrent `generate()` calls from one client, each with its own sequence; total tok/s = generated tokens ÷ wall time",
    "(short prompts, so the prefill is included but small). Median of the repetitions, taken in interleaved rounds (1, 4, 8",
    "sessions in each).",
    "Each server batches its sessions' decode steps (node/server/engineScheduler.ts): steps that wait together run as",
    "one engine run, reading each weight once for the batch. The client is one process serving every session, as a",
    "gateway would: its LM head runs are shared too (client/batchingHead.ts). What a process sends in one turn of its event",
    "loop leaves in one write per connection (protocol/turnWrites.ts: a batch's eight steps or outputs, one system call),",
    "a server's receipts follow its batch's outputs, and a batch that arrives in one read is taken without waiting for",
    "stragglers (protocol/gather.ts). All processes share this",
    `${cpu.length}-core machine, so the client's and both servers' work compete for the same two cores.`,
  );
}
