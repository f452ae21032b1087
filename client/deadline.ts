/**
 * A timer for work that must finish in time, restarted whenever the work shows progress. `expired`
 * resolves (it never rejects) with the error `onExpire` makes when the timer fires, so that it can be
 * raced against the work with `unlessFirst`.
 */
export class Deadline {
  readonly expired: Promise<Error>;
  private timer: NodeJS.Timeout | undefined;
  private fire: (err: Error) => void = () => undefined;

  constructor(
    readonly timeoutMs: number,
    private readonly onExpire: () => Error,
  ) {
    this.expired = new Promise((resolve) => (this.fire = resolve));
    this.restart();
  }

  /** Gives the work `timeoutMs` again from now. */
  restart(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.fire(this.onExpire()), this.timeoutMs);
  }

  clear(): void {
    clearTimeout(this.timer);
  }
}

/** The outcome of `work`, unless one of `failures` (each resolving with an error) comes first: then that error. */
export function unlessFirst<T>(work: Promise<T>, ...failures: Promise<Error>[]): Promise<T> {
  return Promise.race([
    work,
    ...failures.map((f) =>
      f.then((err) => {
        throw err;
      }),
    ),
  ]);
}

/** `work`, or the error of `onExpire` if it has not settled within `timeoutMs`. */
export async function withDeadline<T>(work: Promise<T>, timeoutMs: number, onExpire: () => Error): Promise<T> {
  const deadline = new Deadline(timeoutMs, onExpire);
  try {
    return await unlessFirst(work, deadline.expired);
  } finally {
    deadline.clear();
  }
}
