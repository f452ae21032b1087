import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Sample } from "../snapshot.ts";
import { colorOf, short } from "./format.ts";

export interface LinePlotProps {
  title: string;
  samples: Sample[];
  /** Which value of a sample to plot, per server. */
  pick: (s: Sample) => Record<string, number>;
  /** A dashed horizontal line (θ on the trust plot). */
  threshold?: { label: string; value: number };
  yRange?: [number, number];
}

/** A line per server over time (uPlot); rebuilt when the set of servers changes, else only fed new data. */
export function LinePlot({ title, samples, pick, threshold, yRange }: LinePlotProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<{ u: uPlot; keys: string } | undefined>(undefined);
  const servers = [...new Set(samples.flatMap((s) => Object.keys(pick(s))))].sort();
  const keys = servers.join(",") + (threshold === undefined ? "" : "|θ");
  const data: uPlot.AlignedData = [
    samples.map((s) => s.at / 1000),
    ...servers.map((op) => samples.map((s) => pick(s)[op] ?? null)),
    ...(threshold === undefined ? [] : [samples.map(() => threshold.value)]),
  ];

  useEffect(() => {
    const el = box.current;
    if (el === null) return;
    if (plot.current?.keys !== keys) {
      plot.current?.u.destroy();
      const opts: uPlot.Options = {
        title,
        width: Math.max(300, el.clientWidth),
        height: 220,
        scales: { x: { time: true }, ...(yRange === undefined ? {} : { y: { range: yRange } }) },
        series: [
          {},
          ...servers.map((op) => ({ label: short(op), stroke: colorOf(op), width: 2, points: { show: false } })),
          ...(threshold === undefined ? [] : [{ label: threshold.label, stroke: "#dc2626", dash: [6, 4], width: 1.5, points: { show: false } }]),
        ],
        legend: { live: false },
      };
      plot.current = { u: new uPlot(opts, data, el), keys };
    } else {
      plot.current.u.setData(data);
    }
  });

  useEffect(() => {
    const el = box.current;
    if (el === null) return;
    const resize = new ResizeObserver(() => plot.current?.u.setSize({ width: Math.max(300, el.clientWidth), height: 220 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.current?.u.destroy();
      plot.current = undefined;
    };
  }, []);

  return <div class="plot" ref={box} />;
}
