/**
 * What `efed generate --json` printed, without the facts of the run (timing, and the servers and
 * receipts of a route): what two runs of the same generation must agree on.
 */
export function generatedJson(stdout: string): Record<string, unknown> {
  const printed = JSON.parse(stdout) as Record<string, unknown>;
  return Object.fromEntries(Object.entries(printed).filter(([key]) => !["timing", "servers", "receipts"].includes(key)));
}
