import { useEffect, useState } from "preact/hooks";
import type { DashboardEvent, Sample, Snapshot } from "../snapshot.ts";

/** Plot points the page keeps (the server keeps its own history and sends it on connect). */
const MAX_SAMPLES = 600;

export interface Live {
  snapshot: Snapshot | undefined;
  samples: Sample[];
  connected: boolean;
}

/** The dashboard's state as the server pushes it (EventSource reconnects by itself after a drop). */
export function useLive(url: string): Live {
  const [live, setLive] = useState<Live>({ snapshot: undefined, samples: [], connected: false });
  useEffect(() => {
    const source = new EventSource(url);
    source.onopen = () => setLive((l) => ({ ...l, connected: true }));
    source.onerror = () => setLive((l) => ({ ...l, connected: false }));
    source.onmessage = (m: MessageEvent<string>) => {
      const e = JSON.parse(m.data) as DashboardEvent;
      setLive((l) => {
        switch (e.type) {
          case "history":
            return { ...l, samples: e.samples.slice(-MAX_SAMPLES) };
          case "snapshot":
            return { ...l, snapshot: e.snapshot };
          case "sample":
            return { ...l, samples: [...l.samples, e.sample].slice(-MAX_SAMPLES) };
        }
      });
    };
    return () => source.close();
  }, [url]);
  return live;
}
