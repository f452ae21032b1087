import type { ModelView, ServerView } from "../snapshot.ts";
import { colorOf, short } from "./format.ts";

const ROW = 26;
const LABEL = 150;
const WIDTH = 720;

/** Why a server is not usable, or undefined when it is. */
export function problemOf(s: ServerView): string | undefined {
  if (s.health === "down") return `down: ${s.reason ?? "unreachable"}`;
  if (s.belowTheta) return "trust below θ";
  if (!s.collateralized) return "not collateralized";
  if (!s.eligible) return "not eligible (probation)";
  return undefined;
}

/**
 * The layer-coverage chart of one model: a row per server with a bar over the layers it serves,
 * and on top how many usable servers cover each layer (0: a gap no route can cross).
 */
export function Coverage({ model }: { model: ModelView }) {
  const n = model.numLayers;
  const x = (layer: number): number => LABEL + (layer / n) * (WIDTH - LABEL - 10);
  const usable = model.servers.filter((s) => problemOf(s) === undefined);
  const depth = Array.from({ length: n }, (_, l) => usable.filter((s) => s.firstLayer <= l && l < s.lastLayer).length);
  const height = ROW * (model.servers.length + 2) + 10;
  return (
    <svg class="coverage" viewBox={`0 0 ${WIDTH} ${height}`} role="img" aria-label={`layer coverage of ${model.name}`}>
      <text x={4} y={ROW - 8} class="axis">usable servers</text>
      {depth.map((d, l) => (
        <g key={l}>
          <rect x={x(l) + 1} y={4} width={x(l + 1) - x(l) - 2} height={ROW - 8} class={d === 0 ? "gap" : "depth"} style={{ opacity: d === 0 ? 1 : Math.min(1, 0.25 + d * 0.25) }} />
          <text x={(x(l) + x(l + 1)) / 2} y={ROW - 9} class="depthText">{d}</text>
        </g>
      ))}
      {model.servers.map((s, i) => {
        const y = ROW * (i + 1) + 4;
        const problem = problemOf(s);
        return (
          <g key={s.operator} data-testid="coverage-bar">
            <title>{`${s.operator} · layers ${s.firstLayer}:${s.lastLayer} · ${s.endpoint}${problem === undefined ? "" : ` · ${problem}`}`}</title>
            <text x={4} y={y + ROW / 2 + 1} class="label">{short(s.operator)}</text>
            <rect
              x={x(s.firstLayer) + 1}
              y={y + 2}
              width={x(s.lastLayer) - x(s.firstLayer) - 2}
              height={ROW - 8}
              rx={4}
              fill={problem === undefined ? colorOf(s.operator) : undefined}
              class={problem === undefined ? "bar" : s.health === "down" ? "bar down" : "bar warn"}
            />
            {problem !== undefined && (
              <text x={x(s.firstLayer) + 8} y={y + ROW / 2 + 1} class="barText">{problem.split(":")[0]}</text>
            )}
          </g>
        );
      })}
      {Array.from({ length: n + 1 }, (_, l) => l)
        .filter((l) => l % Math.ceil(n / 16) === 0 || l === n)
        .map((l) => (
          <text key={l} x={x(l)} y={height - 4} class="tick">{l}</text>
        ))}
    </svg>
  );
}
