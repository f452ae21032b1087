// How the process of a command that loads a model's weights is set up. bin/efed.mjs applies it by
// replacing the process once (same pid, same arguments); benchmarks start their stand-ins with it.

/** The commands that load a model's weights. */
export const MODEL_COMMANDS = new Set(["server", "verifier", "generate", "chat", "gateway", "compress", "convert", "eval"]);

/**
 * V8's young generation kept at 4 MiB per semi-space (Node's default lets it grow to 16): it grows
 * while the modules load and stays committed, ~25 MB of a shard's peak RSS. The price is a
 * scavenge every ~50 decode steps instead of every ~600 (~1.3 ms each; 0.03 ms per step on average,
 * measured on an efed server of the shipped model). Not added when the user set the flag.
 */
const SEMI_SPACE_FLAG = "--max-semi-space-size";
const SEMI_SPACE_MIB = 4;

/** The Node.js flags a model command's process should start with that `execArgv` and `NODE_OPTIONS` lack. */
export function missingModelFlags(execArgv, nodeOptions = "") {
  const given = `${nodeOptions} ${execArgv.join(" ")}`;
  return given.includes(SEMI_SPACE_FLAG) ? [] : [`${SEMI_SPACE_FLAG}=${SEMI_SPACE_MIB}`];
}

/**
 * The environment of a model command's process, or undefined when `env` already is one. glibc's
 * malloc backs its large allocations by transparent huge pages, so ONNX Runtime's copy of the
 * weights (and the arrays it is built from) faults in 2 MiB at a time: on a VM a 4 KiB page fault
 * costs ~15 µs, and a 1 GB shard loaded in 5.6 s instead of 8.1. glibc reads its tunables only when
 * a process starts. EFED_HUGEPAGES=0 keeps the default.
 */
export function modelProcessEnv(env) {
  const tunables = env.GLIBC_TUNABLES ?? "";
  if (env.EFED_HUGEPAGES === "0" || tunables.includes("glibc.malloc.hugetlb")) return undefined;
  return { ...env, GLIBC_TUNABLES: tunables === "" ? "glibc.malloc.hugetlb=1" : `${tunables}:glibc.malloc.hugetlb=1` };
}
