/**
 * The environment of a worker process that stands for an efed command loading a model: bin/efed.mjs
 * runs those with glibc's malloc on transparent huge pages (EFED_HUGEPAGES=0 turns it off there).
 */
export function modelCommandEnv(): NodeJS.ProcessEnv {
  return process.env.EFED_HUGEPAGES === "0" ? process.env : { ...process.env, GLIBC_TUNABLES: "glibc.malloc.hugetlb=1" };
}
