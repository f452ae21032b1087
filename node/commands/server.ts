import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { JsonRpcProvider, NonceManager, Wallet, parseEther, parseUnits, type Signer } from "ethers";
import { pino } from "pino";
import { buildManifest, readManifest, variantIdOf, verifyTensors } from "../../engine/model/manifest.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { Shard } from "../../engine/runtime/shard.js";
import { layerPrefix } from "../../engine/model/weights.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import {
  Commitments__factory,
  EFedToken__factory,
  ModelRegistry__factory,
  Staking__factory,
  type Commitments,
  type EFedToken,
  type Staking,
} from "../../types/ethers-contracts/index.js";
import { readDeployment } from "../chain/deployment.js";
import { Committer } from "../chain/committer.js";
import { DEFAULT_BATCH_POLICY } from "../server/engineScheduler.js";
import { DEFAULT_SERVER_LIMITS } from "../server/limits.js";
import { ShardServer } from "../server/shardServer.js";
import { ActivationStore } from "../store/activationStore.js";
import { layerRange, port, positiveInt } from "./options.js";

const root = fileURLToPath(new URL("../..", import.meta.url));

interface ServerFlags {
  model: string;
  layers: { first: number; last: number };
  host: string;
  port: number;
  publicUrl?: string;
  key?: string;
  rpc?: string;
  deployment?: string;
  stake?: string;
  price: string;
  threads: number;
  store?: string;
  maxSessions: number;
  maxSessionTokens: number;
  maxBatch: number;
  forwardHosts: string;
  forwardPrivate?: boolean;
  commitEverySeconds: number;
}

/** `efed server`: serve a layer range of a model over WebSockets, registered and committing on chain when --rpc is given. */
export function serverCommand(): Command {
  return new Command("server")
    .description("serve a contiguous layer range of a model over WebSockets")
    .requiredOption("--model <dir>", "model directory (only the served layers are read)")
    .requiredOption("--layers <first:last>", "layers served, FIRST inclusive, LAST exclusive", layerRange)
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--port <port>", "port to listen on (0: any free port)", port, 0)
    .option("--public-url <url>", "endpoint registered on chain (default ws://HOST:PORT)")
    .option("--key <file>", "file holding the staked private key (hex); default: $EFED_SERVER_KEY, or a throwaway key standalone")
    .option("--rpc <url>", "EVM JSON-RPC endpoint; without it the server runs standalone")
    .option("--deployment <file>", "contract addresses (default deployments/<chainId>.json)")
    .option("--stake <tokens>", "deposit this many tokens as stake before registering")
    .option("--price <tokens>", "price per token, in tokens", "0")
    .option("--threads <n>", "intra-op threads", positiveInt(256), 1)
    .option("--store <file>", "SQLite file of receipts and activations (default: efed-store-<address>.sqlite)")
    .option("--max-sessions <n>", "open sessions at most", positiveInt(), DEFAULT_SERVER_LIMITS.maxSessions)
    .option("--max-session-tokens <n>", "tokens per session at most", positiveInt(), DEFAULT_SERVER_LIMITS.maxSessionTokens)
    .option("--max-batch <n>", "concurrent sessions' decode steps run together in one engine run, at most", positiveInt(256), DEFAULT_BATCH_POLICY.maxBatch)
    .option(
      "--forward-hosts <hosts>",
      'hosts a client may name as the next hop of a forwarded step, comma-separated, "*" for any, "none" to refuse forwarding',
      "*",
    )
    .option("--forward-private", "also forward to loopback, private, link-local and other non-public addresses (tests, private clusters); default: public only")
    .option("--commit-every-seconds <n>", "post a commitment batch this often (with --rpc)", positiveInt(), 60)
    .action(async (flags: ServerFlags) => {
      const logger = pino({ level: process.env.EFED_LOG_LEVEL ?? "info" });
      const model = ModelDirectory.open(flags.model);
      const { first, last } = flags.layers;
      if (last > model.config.numLayers) {
        throw new InvalidArgumentError(`--layers ${first}:${last} exceeds the model's ${model.config.numLayers} layers`);
      }
      const manifest = readManifest(flags.model) ?? buildManifest(model);
      const variantId = variantIdOf(manifest);
      // the manifest names the tensors each layer stores (dense weights, or SVD factors and quantized codes)
      const prefixes = Array.from({ length: last - first }, (_, i) => layerPrefix(first + i));
      const served = Object.keys(manifest.tensors).filter((n) => prefixes.some((p) => n.startsWith(p)));
      verifyTensors(model, manifest, served);

      const wallet = loadKey(flags.key, flags.rpc !== undefined);
      const price = parseUnits(flags.price, 18);
      let chainId = 0n;
      let chain: { signer: Signer; staking: Staking; token: EFedToken; commitments: Commitments } | undefined;
      if (flags.rpc !== undefined) {
        const provider = new JsonRpcProvider(flags.rpc, undefined, { staticNetwork: true });
        chainId = (await provider.getNetwork()).chainId;
        // one NonceManager per key: back-to-back transactions must not reuse a cached nonce
        const signer = new NonceManager(wallet.connect(provider));
        const d = readDeployment(chainId, flags.deployment, root);
        if (!(await ModelRegistry__factory.connect(d.contracts.registry, signer).isActive(variantId))) {
          throw new InvalidArgumentError(`variant ${variantId} of ${flags.model} is not registered (or is retired) on chain ${chainId}`);
        }
        chain = {
          signer,
          staking: Staking__factory.connect(d.contracts.staking, signer),
          token: EFedToken__factory.connect(d.contracts.token, signer),
          commitments: Commitments__factory.connect(d.contracts.commitments, signer),
        };
      }

      const store = ActivationStore.open(flags.store ?? `efed-store-${wallet.address}.sqlite`, {
        retentionMs: 3 * 24 * 3600_000,
        maxBytes: 8 * 1024 ** 3,
      });
      const shard = await Shard.load(model, first, last, { threads: flags.threads });
      const server = await ShardServer.start({
        shard,
        variantId,
        signingKey: wallet.signingKey,
        address: wallet.address,
        chainId,
        pricePerToken: price,
        host: flags.host,
        port: flags.port,
        limits: { ...DEFAULT_SERVER_LIMITS, maxSessions: flags.maxSessions, maxSessionTokens: flags.maxSessionTokens },
        forwarding: { allowedHosts: forwardHosts(flags.forwardHosts), allowPrivateAddresses: flags.forwardPrivate === true },
        batching: { maxBatch: flags.maxBatch },
        store,
        logger,
        ...(chain === undefined ? {} : { commitments: await chain.commitments.getAddress() }),
      });

      let committer: Committer | undefined;
      if (chain !== undefined) {
        try {
          if (flags.stake !== undefined) {
            const amount = parseEther(flags.stake);
            await (await chain.token.approve(await chain.staking.getAddress(), amount)).wait();
            await (await chain.staking.deposit(amount)).wait();
          }
          const endpoint = flags.publicUrl ?? server.url;
          await (await chain.staking.registerServer(variantId, first, last, endpoint, price)).wait();
          logger.info({ variantId, endpoint, chainId: chainId.toString() }, "registered on chain");
        } catch (err) {
          await server.stop();
          store.close();
          await shard.release();
          throw err;
        }
        committer = new Committer({ commitments: chain.commitments, store, maxReceiptsPerBatch: 100_000, logger });
      }
      logger.info({ url: server.url, address: wallet.address, variantId, layers: `${first}:${last}` }, "serving");
      console.log(JSON.stringify({ event: "listening", url: server.url, address: wallet.address, variantId }));

      const timer =
        committer === undefined
          ? undefined
          : setInterval(() => committer.commitOnce().catch((err: unknown) => logger.error({ err }, "commit failed")), flags.commitEverySeconds * 1000);
      await new Promise<void>((resolve) => {
        const stop = (): void => resolve();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
      logger.info("shutting down");
      if (timer !== undefined) clearInterval(timer);
      await server.stop();
      await committer?.commitOnce();
      store.close();
      await shard.release();
    });
}

/** "--forward-hosts": "*" any host, "none" no forwarding, else the listed hosts. */
function forwardHosts(value: string): readonly string[] | "*" {
  const v = value.trim();
  if (v === "*") return "*";
  if (v === "none") return [];
  return v.split(",").map((h) => h.trim());
}

function loadKey(file: string | undefined, required: boolean): Wallet {
  const hex = file !== undefined ? readFileSync(file, "utf8").trim() : process.env.EFED_SERVER_KEY;
  if (hex === undefined || hex === "") {
    if (required) throw new InvalidArgumentError("a staked key is needed with --rpc: pass --key FILE or set EFED_SERVER_KEY");
    return Wallet.createRandom() as unknown as Wallet;
  }
  try {
    return new Wallet(hex.startsWith("0x") ? hex : `0x${hex}`);
  } catch {
    throw new InvalidArgumentError(`${file ?? "EFED_SERVER_KEY"} does not hold a valid private key`);
  }
}
