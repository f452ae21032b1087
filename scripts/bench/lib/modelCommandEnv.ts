import { missingModelFlags, modelProcessEnv } from "../../../bin/modelProcess.mjs";

/**
 * The environment of a worker process that stands for an efed command loading a model, as
 * bin/efed.mjs sets it up (glibc's malloc on transparent huge pages; EFED_HUGEPAGES=0 turns it off).
 */
export function modelCommandEnv(): NodeJS.ProcessEnv {
  return modelProcessEnv(process.env) ?? process.env;
}

/** The Node.js flags of such a worker, before its own (V8's young generation as bin/efed.mjs sizes it). */
export function modelCommandFlags(): string[] {
  return missingModelFlags([], process.env.NODE_OPTIONS);
}
