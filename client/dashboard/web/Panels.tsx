import type { ComponentChildren } from "preact";
import type { DisputeView, ModelView, Snapshot } from "../snapshot.ts";
import { problemOf } from "./Coverage.tsx";
import { colorOf, percent, short, tokens } from "./format.ts";

export function Panel({ title, children, wide }: { title: string; children: ComponentChildren; wide?: boolean }) {
  return (
    <section class={wide === true ? "panel wide" : "panel"}>
      <h2>{title}</h2>
      {children}
    </section>
  );
}

function Stat({ label, value, testid }: { label: string; value: string | number; testid?: string }) {
  return (
    <div class="stat" data-testid={testid}>
      <div class="value">{value}</div>
      <div class="label">{label}</div>
    </div>
  );
}

function Tx({ hash, txUrl }: { hash: string | undefined; txUrl: string }) {
  return hash === undefined ? <span class="muted">—</span> : <a href={`${txUrl}${hash}`} target="_blank" rel="noreferrer" class="mono" title={hash}>{short(hash)}</a>;
}

/** Trust against θ: a bar with θ marked. */
function TrustBar({ trust, theta }: { trust: number; theta: number }) {
  return (
    <span class="trust" title={`trust ${trust.toFixed(3)}, θ ${theta.toFixed(3)}`}>
      <span class={trust < theta ? "fill low" : "fill"} style={{ width: percent(Math.min(1, trust)) }} />
      <span class="theta" style={{ left: percent(theta) }} />
      <span class="num">{trust.toFixed(3)}</span>
    </span>
  );
}

export function ServerTable({ model, theta }: { model: ModelView; theta: number }) {
  return (
    <table>
      <thead>
        <tr>
          <th>server</th><th>layers</th><th>price / token</th><th>stake</th><th>slashed</th><th>trust vs θ</th><th>step</th><th>tokens/s</th><th>batches</th><th>audited</th><th>state</th>
        </tr>
      </thead>
      <tbody>
        {model.servers.map((s) => {
          const problem = problemOf(s);
          return (
            <tr key={s.operator} data-testid="server-row" data-operator={s.operator} class={problem === undefined ? "" : s.health === "down" ? "row-down" : "row-warn"}>
              <td><span class="dot" style={{ background: colorOf(s.operator) }} /><span class="mono" title={`${s.operator}\n${s.endpoint}`}>{short(s.operator)}</span></td>
              <td>{s.firstLayer}:{s.lastLayer}</td>
              <td>{tokens(s.pricePerTokenWei, 6)}</td>
              <td>{tokens(s.stakeWei, 0)}</td>
              <td data-testid="server-slashed">{s.slashedWei === "0" ? "—" : tokens(s.slashedWei, 2)}</td>
              <td><TrustBar trust={s.trust} theta={theta} /></td>
              <td title={s.reason}>{s.stepMs === undefined ? "—" : `${s.stepMs} ms`}</td>
              <td>{s.tokensPerS}</td>
              <td>{s.batchesPosted}</td>
              <td>{s.receiptsAudited} / {s.receiptsCommitted}</td>
              <td><span class={`badge ${problem === undefined ? (s.health === "up" ? "ok" : "idle") : s.health === "down" ? "bad" : "warn"}`} title={problem ?? s.reason}>{problem === undefined ? s.health : problem.split(":")[0]}</span></td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

export function Work({ s }: { s: Snapshot }) {
  return (
    <div class="stats">
      <Stat label="sessions (gateway)" value={s.gateway?.sessions ?? "—"} testid="stat-sessions" />
      <Stat label="tokens (gateway)" value={s.gateway?.tokens ?? "—"} />
      <Stat label="batches posted" value={s.work.batchesPosted} testid="stat-batches" />
      <Stat label="receipts committed" value={s.work.receiptsCommitted} />
      <Stat label="receipts audited" value={s.work.receiptsAudited} testid="stat-audited" />
    </div>
  );
}

export function Money({ s }: { s: Snapshot }) {
  const m = s.money;
  return (
    <>
      <div class="stats">
        <Stat label="channels opened" value={m.channelsOpened} testid="stat-channels" />
        <Stat label="vouchers redeemed" value={m.vouchersRedeemed} />
        <Stat label="paid to servers" value={tokens(m.paidToServersWei, 3)} />
        <Stat label="fees to verifiers' pool" value={tokens(m.feesWei, 3)} />
        <Stat label="pool unallocated" value={tokens(m.rewardPoolWei, 2)} />
      </div>
      {m.channels.length > 0 && (
        <table>
          <thead><tr><th>channel</th><th>client → server</th><th>deposit</th><th>redeemed</th><th>vouchers</th><th></th></tr></thead>
          <tbody>
            {m.channels.slice(0, 12).map((c) => (
              <tr key={c.id}>
                <td class="mono" title={c.id}>{short(c.id)}</td>
                <td class="mono">{short(c.client)} → {short(c.server)}</td>
                <td>{tokens(c.depositWei, 3)}</td>
                <td>{tokens(c.paidWei, 4)}</td>
                <td>{c.vouchersRedeemed}</td>
                <td>{c.closed ? "closed" : "open"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {m.rewards.length > 0 && (
        <table>
          <thead><tr><th>verifier</th><th>passes recorded</th><th>rewards allocated</th><th>claimed</th></tr></thead>
          <tbody>
            {m.rewards.map((r) => (
              <tr key={r.verifier}>
                <td class="mono" title={r.verifier}>{short(r.verifier)}</td>
                <td>{r.passesRecorded}</td>
                <td>{tokens(r.allocatedWei, 3)}</td>
                <td>{tokens(r.claimedWei, 3)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}

const OUTCOME: Record<DisputeView["outcome"], string> = { none: "—", serverAtFault: "server at fault", serverCorrect: "server correct", noQuorum: "no quorum" };

export function Disputes({ s }: { s: Snapshot }) {
  if (s.disputes.length === 0) return <p class="muted">No disputes: every audited receipt matched its re-execution so far.</p>;
  return (
    <table>
      <thead><tr><th>#</th><th>server</th><th>challenger</th><th>batch</th><th>status</th><th>votes (fault / correct)</th><th>outcome</th><th>slashed</th><th>to challenger</th><th>opened</th><th>settled</th></tr></thead>
      <tbody>
        {s.disputes.map((d) => {
          const fault = d.status === "settled" ? d.faultVotes : d.votes.filter((v) => v.serverAtFault).length;
          const correct = d.status === "settled" ? d.correctVotes : d.votes.filter((v) => !v.serverAtFault).length;
          return (
            <tr key={d.id} data-testid="dispute-row" class={d.outcome === "serverAtFault" ? "row-down" : ""}>
              <td>{d.id}</td>
              <td class="mono" title={d.server}><span class="dot" style={{ background: colorOf(d.server) }} />{short(d.server)}</td>
              <td class="mono" title={d.challenger}>{short(d.challenger)}</td>
              <td>{d.batchId}</td>
              <td>{d.status}</td>
              <td>{fault} / {correct}{d.committee.length > 0 ? ` of ${d.committee.length}` : ""}</td>
              <td data-testid="dispute-outcome">{OUTCOME[d.outcome]}</td>
              <td data-testid="dispute-slashed">{d.slashedWei === "0" ? "—" : tokens(d.slashedWei, 2)}</td>
              <td>{d.toChallengerWei === "0" ? "—" : tokens(d.toChallengerWei, 2)}</td>
              <td><Tx hash={d.openedTx} txUrl={s.txUrl} /></td>
              <td><Tx hash={d.settledTx} txUrl={s.txUrl} /></td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
