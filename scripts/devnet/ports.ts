import { createServer } from "node:net";

/** A port the devnet cannot use; the message says what uses it for and how to choose another. */
export class PortInUseError extends Error {
  constructor(
    readonly port: number,
    what: string,
    flag: string,
  ) {
    super(`port ${port} on 127.0.0.1 (${what}) is in use: stop what listens there (another devnet?), or pass ${flag} N (0: any free port)`);
    this.name = "PortInUseError";
  }
}

/** Listens on 127.0.0.1:`port` for a moment: the port it got (the OS's choice for 0), or undefined if in use. */
function tryListen(port: number): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", (err: NodeJS.ErrnoException) => (err.code === "EADDRINUSE" || err.code === "EACCES" ? resolve(undefined) : reject(err)));
    server.listen({ port, host: "127.0.0.1", exclusive: true }, () => {
      const address = server.address();
      const got = typeof address === "object" && address !== null ? address.port : undefined;
      server.close(() => resolve(got));
    });
  });
}

/** `port` if free (or, for 0, a free one the OS picks); a PortInUseError naming `what` and `flag` otherwise. */
export async function claimPort(port: number, what: string, flag: string): Promise<number> {
  const got = await tryListen(port);
  if (got === undefined) throw new PortInUseError(port, what, flag);
  return got;
}

/** Whether something accepts connections on 127.0.0.1:`port` (a stopped devnet must leave none). */
export async function portInUse(port: number): Promise<boolean> {
  return (await tryListen(port)) === undefined;
}
