import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { JsonRpcProvider, NonceManager, parseEther, parseUnits, type Signer } from "ethers";
import { pino } from "pino";
import { buildManifest, readManifest, variantIdOf, verifyTensors } from "../../engine/model/manifest.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { Shard } from "../../engine/runtime/shard.js";
import { layerPrefix } from "../../engine/model/weights.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import {
  Commitments__factory,
  DataRequests__factory,
  EFedToken__factory,
  ModelRegistry__factory,
  PaymentChannels__factory,
  TicketBroker__factory,
  Staking__factory,
  type Commitments,
  type DataRequests,
  type EFedToken,
  type Staking,
} from "../../types/ethers-contracts/index.js";
import { readDeployment } from "../chain/deployment.js";
import { Committer } from "../chain/committer.js";
import { DataResponder, blockSecondsAgo } from "../chain/dataResponder.js";
import { RegisteredEndpoints } from "../chain/registeredEndpoints.js";
import { Redeemer, channelReader } from "../chain/redeemer.js";
import { DEFAULT_CREDIT_STEPS, PaymentGate } from "../server/paymentGate.js";
import { TicketRedeemer, senderReader } from "../chain/ticketRedeemer.js";
import { DEFAULT_SENDER_INFO_MAX_AGE_MS, TicketGate } from "../server/ticketGate.js";
import { TicketStore } from "../store/ticketStore.js";
import { VoucherStore } from "../store/voucherStore.js";
import { voucherDomain } from "../../protocol/eip712.js";
import { ticketDomain } from "../../protocol/tickets.js";
import { DEFAULT_BATCH_POLICY } from "../server/engineScheduler.js";
import { DEFAULT_SERVER_LIMITS, serverLimits, type ServerLimits } from "../server/limits.js";
import { MAX_SIGN_EVERY } from "../../protocol/wire.js";
import { DEFAULT_SIGN_EVERY } from "../server/attestation.js";
import { ShardServer } from "../server/shardServer.js";
import { ActivationStore } from "../store/activationStore.js";
import { loadOrCreateKey } from "./keyFile.js";
import { layerRange, nonNegativeInt, port, positiveInt } from "./options.js";

const root = fileURLToPath(new URL("../..", import.meta.url));

/** Every server limit as a flag: name, limit, what it bounds (unit in the name). */
const LIMIT_FLAGS: readonly [flag: string, limit: keyof ServerLimits, what: string][] = [
  ["--max-sessions <n>", "maxSessions", "open sessions at most"],
  ["--max-session-tokens <n>", "maxSessionTokens", "tokens per session at most (clamped to the model's context)"],
  ["--max-step-tokens <n>", "maxStepTokens", "tokens in one step at most"],
  ["--session-idle-ms <ms>", "idleTimeoutMs", "close a session untouched this long"],
  ["--memory-budget-bytes <n>", "memoryBudgetBytes", "KV cache bytes of all sessions together"],
  ["--max-connections <n>", "maxConnections", "connections at once"],
  ["--max-connections-per-address <n>", "maxConnectionsPerAddress", "connections at once from one IP address"],
  ["--max-sessions-per-connection <n>", "maxSessionsPerConnection", "sessions one connection may hold"],
  ["--max-sessions-per-address <n>", "maxSessionsPerAddress", "sessions one IP address may hold"],
  ["--max-requests-in-flight <n>", "maxRequestsInFlightPerConnection", "requests in flight per connection before it is no longer read"],
  ["--max-buffered-bytes <n>", "maxBufferedBytesPerConnection", "reply bytes queued per connection before it is no longer read"],
  ["--max-send-stall-ms <ms>", "maxSendStallMs", "close a connection whose queued replies do not drain for this long"],
  ["--connection-idle-ms <ms>", "connectionIdleMs", "close a connection with no session and no request for this long"],
  ["--fetches-per-second <n>", "fetchesPerSecond", "FetchStep requests per second per connection"],
  ["--fetch-burst <n>", "fetchBurst", "FetchStep requests at once after a pause"],
  ["--binds-per-second <n>", "bindsPerSecond", "BindChannel requests per second per connection"],
  ["--bind-burst <n>", "bindBurst", "BindChannel requests at once after a pause"],
  ["--max-parked-forwards-per-session <n>", "maxParkedForwardsPerSession", "forwarded steps of one session waiting for their route"],
  ["--max-parked-forwards-per-client <n>", "maxParkedForwardsPerClient", "forwarded steps of one connection's sessions waiting for their routes"],
  ["--max-steps-in-flight-per-address <n>", "maxStepsInFlightPerAddress", "steps in flight from one IP address"],
  ["--max-next-hops-per-address <n>", "maxNextHopsPerAddress", "distinct next hops one IP address's forwarded steps may occupy at once"],
  ["--new-peers-per-second <n>", "newPeersPerClientPerSecond", "new next-hop connections one client may cause per second"],
  ["--shutdown-deadline-ms <ms>", "shutdownDeadlineMs", "on SIGTERM, time for in-flight work before connections close"],
];

interface ServerFlags extends Partial<Record<keyof ServerLimits, number>> {
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
  dataDir: string;
  storeRetentionHours: number;
  storeMaxBytes: number;
  tlsCert?: string;
  tlsKey?: string;
  maxBatch: number;
  kvSlots: number;
  batchGatherMs: number;
  batchActiveMs: number;
  forwardHosts: string;
  forwardPrivate?: boolean;
  commitEverySeconds: number;
  creditSteps: number;
  signEvery: number;
  redeemThreshold: string;
  redeemPollMs: number;
  ticketFundsMaxAgeMs: number;
}

/**
 * Ways a program that embeds the command changes what the server runs, never reachable from the
 * command line: the devnet's cheating server (scripts/devnet/cheatingServer.ts) swaps the loaded
 * shard for a faulty one, or makes the store withhold steps, to show the verifiers catch it.
 */
export interface ServerHooks {
  /** What the server runs instead of the shard loaded for `layers` of `model`. */
  shard?: (loaded: Shard, model: ModelDirectory, layers: { first: number; last: number }) => Promise<Shard>;
  /** Called once the receipt store is open, before anything is served. */
  store?: (store: ActivationStore) => void;
}

/** `efed server`: serve a layer range of a model over WebSockets, registered and committing on chain when --rpc is given. */
export function serverCommand(hooks: ServerHooks = {}): Command {
  const command = new Command("server");
  for (const [flag, limit, what] of LIMIT_FLAGS) command.option(flag, `${what} (default ${DEFAULT_SERVER_LIMITS[limit]})`, positiveInt());
  return command
    .description("serve a contiguous layer range of a model over WebSockets")
    .requiredOption("--model <dir>", "model directory (only the served layers are read)")
    .requiredOption("--layers <first:last>", "layers served, FIRST inclusive, LAST exclusive", layerRange)
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--port <port>", "port to listen on (0: any free port)", port, 0)
    .option("--public-url <url>", "endpoint registered on chain (default ws://HOST:PORT)")
    .option("--key <file>", "file holding the staked private key (hex); default: $EFED_SERVER_KEY, else DATA_DIR/efed-server.key (created once)")
    .option("--data-dir <dir>", "where the default key file and receipt store live (default $EFED_DATA_DIR or .)", process.env.EFED_DATA_DIR ?? ".")
    .option("--rpc <url>", "EVM JSON-RPC endpoint; without it the server runs standalone")
    .option("--deployment <file>", "contract addresses (default deployments/<chainId>.json)")
    .option("--stake <tokens>", "deposit this many tokens as stake before registering")
    .option("--price <tokens>", "price per token, in tokens", "0")
    .option("--threads <n>", "intra-op threads", positiveInt(256), 1)
    .option("--store <file>", "SQLite file of receipts and activations (default: DATA_DIR/efed-store-<address>.sqlite)")
    .option("--store-retention-hours <h>", "keep steps this long (at least the challenge window plus the longest dispute)", positiveInt(), 72)
    .option("--store-max-bytes <n>", "activation bytes the store keeps at most; full of protected steps, the server takes no steps", positiveInt(), 8 * 1024 ** 3)
    .option("--tls-cert <file>", "serve wss:// with this PEM certificate (with --tls-key)")
    .option("--tls-key <file>", "PEM private key of --tls-cert")
    .option("--max-batch <n>", "concurrent sessions' decode steps run together in one engine run, at most", positiveInt(256), DEFAULT_BATCH_POLICY.maxBatch)
    .option(
      "--kv-slots <n>",
      `sessions whose KV caches live in the shared batch buffer (batched steps run in place; each slot up to ${DEFAULT_BATCH_POLICY.maxSlotTokens} tokens); 0 turns it off`,
      nonNegativeInt(1024),
      DEFAULT_BATCH_POLICY.slots,
    )
    .option(
      "--batch-gather-ms <ms>",
      "a decode run waits up to this long (again after each arrival) for the steps of sessions that ran recently, so they run as one batch; 0 runs at once",
      nonNegativeInt(100),
      DEFAULT_BATCH_POLICY.gatherMs,
    )
    .option(
      "--batch-active-ms <ms>",
      "a session counts as running (worth waiting for) this long after its last step; 0 never waits",
      nonNegativeInt(3_600_000),
      DEFAULT_BATCH_POLICY.activeMs,
    )
    .option(
      "--forward-hosts <hosts>",
      'hosts a client may name as the next hop of a forwarded step, comma-separated, "*" for any, "none" to refuse forwarding',
      "*",
    )
    .option("--forward-private", "also forward to loopback, private, link-local and other non-public addresses (tests, private clusters); default: public only")
    .option("--commit-every-seconds <n>", "post a commitment batch this often (with --rpc)", positiveInt(), 60)
    .option(
      "--credit-steps <n>",
      "with --rpc and a price: steps of each session served before payment covers them (announced: clients pay once every that many steps)",
      positiveInt(),
      DEFAULT_CREDIT_STEPS,
    )
    .option(
      "--sign-every <n>",
      `sign each session's receipt chain after every n steps (and when the session closes): one signature per n steps, at most ${MAX_SIGN_EVERY}`,
      positiveInt(MAX_SIGN_EVERY),
      DEFAULT_SIGN_EVERY,
    )
    .option("--redeem-threshold <tokens>", "with --rpc and a price: redeem a channel once its unredeemed vouchers reach this many tokens (closing channels and shutdown: always)", "1")
    .option("--redeem-poll-ms <ms>", "with --rpc and a price: how often to look for closing channels and due redemptions", positiveInt(), 5_000)
    .option(
      "--ticket-funds-max-age-ms <ms>",
      "with tickets: how long a client's deposit, reserve share and unlock state as read from the broker are trusted (0: read for every ticket)",
      nonNegativeInt(60_000),
      DEFAULT_SENDER_INFO_MAX_AGE_MS,
    )
    .action(async (flags: ServerFlags) => {
      const logger = pino({ level: process.env.EFED_LOG_LEVEL ?? "info" });
      const limits = serverLimits(Object.fromEntries(LIMIT_FLAGS.flatMap(([, l]) => (flags[l] === undefined ? [] : [[l, flags[l]]]))));
      if ((flags.tlsCert === undefined) !== (flags.tlsKey === undefined)) throw new InvalidArgumentError("give both --tls-cert and --tls-key, or neither");
      const tls = flags.tlsCert === undefined ? undefined : { certPem: readFileSync(flags.tlsCert, "utf8"), keyPem: readFileSync(flags.tlsKey!, "utf8") };
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

      const { wallet, created, path: keyPath } = loadOrCreateKey(flags.key, flags.dataDir, flags.rpc !== undefined);
      if (created) logger.warn({ keyFile: keyPath, address: wallet.address }, "created a new server key; keep this file: receipts are signed with it");
      else logger.info({ keyFile: keyPath ?? "$EFED_SERVER_KEY", address: wallet.address }, "server key loaded");
      const price = parseUnits(flags.price, 18);
      let chainId = 0n;
      let chain: { signer: Signer; staking: Staking; token: EFedToken; commitments: Commitments; channels: string; ticketBroker?: string } | undefined;
      let isVerifier: ((address: string) => Promise<boolean>) | undefined;
      let endpointAllowed: ((url: string, firstLayer: number) => Promise<boolean>) | undefined;
      let dataRequests: DataRequests | undefined;
      if (flags.rpc !== undefined) {
        // no request cache: ethers answers a repeated call from the last 250 ms with the old result, and
        // the server's reads (a client's ticket funds, a transaction count after a failed redemption) must be current
        const provider = new JsonRpcProvider(flags.rpc, undefined, { staticNetwork: true, cacheTimeout: -1 });
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
          channels: d.contracts.channels,
          ...(d.contracts.ticketBroker === undefined ? {} : { ticketBroker: d.contracts.ticketBroker }),
        };
        const staking = chain.staking;
        if (d.contracts.dataRequests !== undefined) dataRequests = DataRequests__factory.connect(d.contracts.dataRequests, signer);
        isVerifier = (address) => staking.isActiveVerifier(address);
        // with a chain, forwarded steps go only to endpoints registered for the next layer range
        const registered = new RegisteredEndpoints({ staking, variantId });
        endpointAllowed = (url, firstLayer) => registered.allowed(url, firstLayer);
      }

      const storePath = flags.store ?? join(flags.dataDir, `efed-store-${wallet.address}.sqlite`);
      const store = ActivationStore.open(storePath, { retentionMs: flags.storeRetentionHours * 3600_000, maxBytes: flags.storeMaxBytes });
      logger.info({ store: storePath, steps: store.count(), bytes: store.bytes() }, "receipt store opened");
      hooks.store?.(store);
      // a priced server on a chain is paid per step through channels; standalone or free, it serves as before
      let payments: { gate: PaymentGate; redeemer: Redeemer; vouchers: VoucherStore } | undefined;
      if (chain !== undefined && price > 0n) {
        const vouchers = VoucherStore.open(storePath);
        const channels = PaymentChannels__factory.connect(chain.channels, chain.signer);
        const gate = new PaymentGate({
          pricePerToken: price,
          creditSteps: flags.creditSteps,
          server: wallet.address,
          voucherDomain: voucherDomain(chainId, chain.channels),
          store: vouchers,
          readChannel: channelReader(channels),
        });
        const redeemer = new Redeemer({
          channels,
          store: vouchers,
          thresholdWei: parseUnits(flags.redeemThreshold, 18),
          pollMs: flags.redeemPollMs,
          onCloseStarted: (id, readyAt) => gate.closing(id, readyAt),
          logger,
        });
        payments = { gate, redeemer, vouchers };
      }
      // a deployment with a TicketBroker: the server also takes probabilistic tickets, and redeems each winner at once
      let tickets: { gate: TicketGate; redeemer: TicketRedeemer; store: TicketStore } | undefined;
      if (chain?.ticketBroker !== undefined && price > 0n) {
        const ticketStore = TicketStore.open(storePath);
        const broker = TicketBroker__factory.connect(chain.ticketBroker, chain.signer);
        const redeemer = new TicketRedeemer({ broker, store: ticketStore, pollMs: flags.redeemPollMs, logger });
        const gate = new TicketGate({
          pricePerToken: price,
          creditSteps: flags.creditSteps,
          server: wallet.address,
          ticketDomain: ticketDomain(chainId, chain.ticketBroker),
          readSender: senderReader(broker, wallet.address),
          senderInfoMaxAgeMs: flags.ticketFundsMaxAgeMs,
          onWinner: (hash, w) => redeemer.add(hash, w),
        });
        tickets = { gate, redeemer, store: ticketStore };
      }
      const loaded = await Shard.load(model, first, last, { threads: flags.threads });
      const shard = hooks.shard === undefined ? loaded : await hooks.shard(loaded, model, flags.layers);
      const server = await ShardServer.start({
        shard,
        variantId,
        signingKey: wallet.signingKey,
        address: wallet.address,
        chainId,
        pricePerToken: price,
        host: flags.host,
        port: flags.port,
        limits,
        forwarding: {
          allowedHosts: forwardHosts(flags.forwardHosts),
          allowPrivateAddresses: flags.forwardPrivate === true,
          ...(endpointAllowed === undefined ? {} : { endpointAllowed }),
        },
        batching: { maxBatch: flags.maxBatch, slots: flags.kvSlots, gatherMs: flags.batchGatherMs, activeMs: flags.batchActiveMs },
        store,
        logger,
        signEvery: flags.signEvery,
        ...(tls === undefined ? {} : { tls }),
        ...(isVerifier === undefined ? {} : { isVerifier }),
        ...(payments === undefined ? {} : { payments: payments.gate }),
        ...(tickets === undefined ? {} : { tickets: tickets.gate }),
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
          payments?.vouchers.close();
          tickets?.store.close();
          store.close();
          await shard.release();
          throw err;
        }
        committer = new Committer({ commitments: chain.commitments, store, maxReceiptsPerBatch: 100_000, logger });
        payments?.redeemer.start();
        tickets?.redeemer.start();
      }
      // answers audits that escalated on chain (withheld data); requests older than the longest dispute are past answering
      const provider = chain?.signer.provider;
      const responder =
        chain === undefined || dataRequests === undefined || provider === undefined || provider === null
          ? undefined
          : new DataResponder({ dataRequests, provider, address: wallet.address, store, logger, fromBlock: await blockSecondsAgo(provider, (await chain.staking.timing()).maxDisputeDuration) });
      responder?.start();
      logger.info({ url: server.url, address: wallet.address, variantId, layers: `${first}:${last}` }, "serving");
      console.log(JSON.stringify({ event: "listening", url: server.url, address: wallet.address, variantId }));

      // retention and the byte budget are enforced on a timer and after each commit
      const prune = (): void => {
        try {
          const dropped = store.prune(Date.now());
          if (dropped > 0) logger.info({ dropped, bytes: store.bytes() }, "receipt store pruned");
        } catch (err) {
          logger.error({ err }, "receipt store prune failed");
        }
      };
      const pruneTimer = setInterval(prune, 60_000);
      const commit = async (): Promise<void> => {
        await committer?.commitOnce();
        prune();
      };
      const timer =
        committer === undefined
          ? undefined
          : setInterval(() => commit().catch((err: unknown) => logger.error({ err }, "commit failed")), flags.commitEverySeconds * 1000);
      await new Promise<void>((resolve) => {
        const stop = (): void => resolve();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
      logger.info("shutting down");
      if (timer !== undefined) clearInterval(timer);
      clearInterval(pruneTimer);
      await responder?.stop();
      await server.stop();
      await commit();
      if (payments !== undefined) {
        await payments.redeemer.stop().catch((err: unknown) => logger.error({ err }, "redeeming on shutdown failed"));
        payments.vouchers.close();
      }
      if (tickets !== undefined) {
        // winners still pending get one more try before the process goes; what fails stays stored for the next run
        await tickets.redeemer.pass().catch((err: unknown) => logger.error({ err }, "redeeming tickets on shutdown failed"));
        await tickets.redeemer.stop();
        tickets.store.close();
      }
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

