import { join } from "node:path";
import { Wallet, type HDNodeWallet } from "ethers";
import type { ModelDirectory } from "../../engine/model/modelDir.js";
import { Shard } from "../../engine/runtime/shard.js";
import type { ForwardingOptions } from "../../node/server/forwarder.js";
import { DEFAULT_SERVER_LIMITS, type ServerLimits } from "../../node/server/limits.js";
import { ShardServer, type ShardServerOptions } from "../../node/server/shardServer.js";
import { ActivationStore } from "../../node/store/activationStore.js";

export interface RunningServer {
  server: ShardServer;
  store: ActivationStore;
  wallet: HDNodeWallet;
  stop(): Promise<void>;
}

/** Starts one in-process shard server for layers [first, last) of `model`, on a free loopback port. */
export async function startServer(
  model: ModelDirectory,
  first: number,
  last: number,
  storeDir: string,
  limits: Partial<ServerLimits> = {},
  variantId = "0x" + "ab".repeat(32),
  /** Signs receipts with this key instead of the announced address's (a cheating server). */
  impostorKey?: HDNodeWallet,
  forwarding: Partial<ForwardingOptions> = {},
  /** Any other server option (batching, isVerifier, tls, …). */
  extra: Partial<ShardServerOptions> = {},
  /** What the server runs instead of the loaded shard (a test's faulty wrapper, scripts/devnet/faultyShard.ts). */
  wrapShard: (shard: Shard) => Shard = (shard) => shard,
): Promise<RunningServer> {
  const wallet = Wallet.createRandom();
  const shard = await Shard.load(model, first, last);
  const store = ActivationStore.open(join(storeDir, `store-${first}-${last}-${wallet.address}.sqlite`), {
    retentionMs: 3_600_000,
    maxBytes: 1 << 30,
  });
  const server = await ShardServer.start({
    shard: wrapShard(shard),
    variantId,
    signingKey: (impostorKey ?? wallet).signingKey,
    address: wallet.address,
    chainId: 31337n,
    limits: { ...DEFAULT_SERVER_LIMITS, ...limits },
    forwarding: { allowPrivateAddresses: true, ...forwarding }, // every test server is on loopback
    store,
    ...extra,
  });
  let stopping: Promise<void> | undefined; // stop() may be called twice (a test, then its cleanup)
  return {
    server,
    store,
    wallet,
    stop: () =>
      (stopping ??= (async () => {
        await server.stop();
        store.close();
        await shard.release();
      })()),
  };
}
