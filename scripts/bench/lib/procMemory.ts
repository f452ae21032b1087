import { readFileSync } from "node:fs";

/** VmRSS (resident now) and VmHWM (peak resident) of a process, in bytes; both 0 when it is gone. */
export function memoryOf(pid: number): { rss: number; peak: number } {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return { rss: 0, peak: 0 };
  }
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0) * 1024;
  return { rss: kib("VmRSS"), peak: kib("VmHWM") };
}
