import { render } from "preact";
import type { Sample } from "../snapshot.ts";
import { Chat } from "./Chat.tsx";
import { Coverage } from "./Coverage.tsx";
import { useLive } from "./events.ts";
import { LinePlot } from "./LinePlot.tsx";
import { Disputes, Money, Panel, ServerTable, Work } from "./Panels.tsx";
import "./style.css";

const trustOf = (s: Sample): Record<string, number> => s.trust;
const throughputOf = (s: Sample): Record<string, number> => s.tokensPerS;

function App() {
  const { snapshot: s, samples, connected } = useLive("events");
  return (
    <>
      <header>
        <h1>eFed</h1>
        {s !== undefined && (
          <span class="meta">
            chain {s.chainId} · block <span data-testid="block">{s.block}</span> · θ {s.theta.toFixed(3)}
          </span>
        )}
        <span class={connected ? "live on" : "live"} data-testid="live">{connected ? "live" : "reconnecting…"}</span>
      </header>
      {s?.error !== undefined && <p class="banner">Reading the chain failed: {s.error} (retrying)</p>}
      {s === undefined ? (
        <p class="muted pad">Waiting for the first reading of the chain…</p>
      ) : (
        <main>
          {s.models.map((m) => (
            <Panel key={m.id} title={`Layer coverage · ${m.name} (${m.numLayers} layers${m.retired ? ", retired" : ""})`} wide>
              <Coverage model={m} />
              <ServerTable model={m} theta={s.theta} />
            </Panel>
          ))}
          {s.models.length === 0 && <Panel title="Models" wide><p class="muted">No model variant is registered yet.</p></Panel>}
          <Panel title="Trust over time">
            <LinePlot title="" samples={samples} pick={trustOf} threshold={{ label: "θ", value: s.theta }} yRange={[0, 1]} />
          </Panel>
          <Panel title="Throughput (tokens/s per server)">
            <LinePlot title="" samples={samples} pick={throughputOf} />
          </Panel>
          <Panel title="Work">
            <Work s={s} />
          </Panel>
          <Panel title="Chat">
            <Chat />
          </Panel>
          <Panel title="Money" wide>
            <Money s={s} />
          </Panel>
          <Panel title="Disputes" wide>
            <Disputes s={s} />
          </Panel>
        </main>
      )}
    </>
  );
}

render(<App />, document.getElementById("app")!);
