import cliProgress from "cli-progress";

/**
 * A progress bar on stderr for long phases ("decompose 120/210"); one bar per phase, redrawn in
 * place on a terminal and silent otherwise, so piped output stays clean.
 */
export function phaseProgress(): { update: (phase: string, done: number, total: number) => void; stop: () => void } {
  let bar: cliProgress.SingleBar | undefined;
  let current: string | undefined;
  const stop = (): void => {
    bar?.stop();
    bar = undefined;
  };
  return {
    update(phase, done, total) {
      if (phase !== current) {
        stop();
        current = phase;
        bar = new cliProgress.SingleBar(
          { format: `${phase.padEnd(10)} [{bar}] {value}/{total} {duration_formatted}`, stream: process.stderr, hideCursor: true },
          cliProgress.Presets.shades_classic,
        );
        bar.start(total, 0);
      }
      bar?.update(done);
    },
    stop,
  };
}
