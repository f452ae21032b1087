import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command, InvalidArgumentError as CommanderArgumentError } from "commander";
import { JsonRpcProvider, NonceManager, parseEther } from "ethers";
import { pino } from "pino";
import { buildManifest, readManifest, variantIdOf, verifyTensors } from "../../engine/model/manifest.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import {
  AuditLedger__factory,
  Commitments__factory,
  DataRequests__factory,
  Disputes__factory,
  EFedToken__factory,
  ModelRegistry__factory,
  Staking__factory,
} from "../../types/ethers-contracts/index.js";
import { readDeployment } from "../chain/deployment.js";
import { AuditState } from "../verifier/auditState.js";
import { toleranceFor } from "../verifier/compareOutput.js";
import { VerifierDaemon } from "../verifier/daemon.js";
import { ReplayShards } from "../verifier/receiptAudit.js";
import { ensureVerifier } from "../verifier/registration.js";
import { loadOrCreateKey } from "./keyFile.js";
import { positiveInt } from "./options.js";

const root = fileURLToPath(new URL("../..", import.meta.url));

interface VerifierFlags {
  rpc: string;
  key: string;
  model: string;
  deployment?: string;
  stake?: string;
  sampleRate: number;
  threads: number;
  state?: string;
  pollMs: number;
  fromBlock: number;
  dataDir: string;
}

/** "--sample-rate": a probability in [0, 1]. */
function probability(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < 0 || n > 1) throw new CommanderArgumentError(`"${value}" is not a probability in [0, 1].`);
  return n;
}

/** "--stake": a decimal amount of tokens. */
function tokens(value: string): string {
  if (!/^\d+(\.\d{1,18})?$/.test(value.trim())) throw new CommanderArgumentError(`"${value}" is not an amount of tokens (e.g. 500 or 0.5).`);
  return value.trim();
}

function blockNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isSafeInteger(n) || n < 0) throw new CommanderArgumentError(`"${value}" is not a block number >= 0.`);
  return n;
}

/** `efed verifier`: stake and register as a verifier, audit a sample of posted receipts, challenge and vote on chain. */
export function verifierCommand(): Command {
  return new Command("verifier")
    .description("audit a random sample of the receipts servers post on chain, challenge wrong or withheld work, vote on dispute committees")
    .requiredOption("--rpc <url>", "JSON-RPC endpoint of the chain")
    .requiredOption("--key <file>", "file holding the verifier's private key (hex); the address stakes and signs")
    .requiredOption("--model <dir>", "model directory of the audited variant (its manifest hash must be registered)")
    .option("--deployment <file>", "deployment file with the contract addresses (default: deployments/<chainId>.json)")
    .option("--stake <tokens>", "deposit this many tokens before registering (default: what is missing up to the verifier minimum)", tokens)
    .option("--sample-rate <p>", "probability with which each posted receipt is audited, 0..1 (0: committee duty only)", probability, 0.05)
    .option("--threads <n>", "intra-op threads of the replay", positiveInt(256), 1)
    .option("--state <file>", "SQLite file of the audit state (default: DATA_DIR/efed-verifier-<address>.sqlite)")
    .option("--poll-ms <ms>", "milliseconds between rounds (read new batches, audit, vote)", positiveInt(), 5_000)
    .option("--from-block <n>", "first block read when the state file is new", blockNumber, 0)
    .option("--data-dir <dir>", "directory of the default state file (default $EFED_DATA_DIR or .)", process.env.EFED_DATA_DIR ?? ".")
    .action(async (flags: VerifierFlags) => {
      const logger = pino({ level: process.env.EFED_LOG_LEVEL ?? "info" });
      const model = ModelDirectory.open(flags.model);
      const manifest = readManifest(flags.model) ?? buildManifest(model);
      // the replay must run the registered weights: every tensor is checked against the manifest once
      verifyTensors(model, manifest, Object.keys(manifest.tensors));
      const variantId = variantIdOf(manifest);
      const { wallet } = loadOrCreateKey(flags.key, flags.dataDir, true);
      const provider = new JsonRpcProvider(flags.rpc, undefined, { staticNetwork: true });
      const chainId = (await provider.getNetwork()).chainId;
      const d = readDeployment(chainId, flags.deployment, root);
      if (d.contracts.disputes === undefined) throw new InvalidArgumentError(`the deployment of chain ${chainId} has no disputes contract: redeploy with npm run deploy`);
      // one NonceManager per key: back-to-back transactions must not reuse a cached nonce
      const signer = new NonceManager(wallet.connect(provider));
      if (!(await ModelRegistry__factory.connect(d.contracts.registry, provider).isActive(variantId))) {
        throw new InvalidArgumentError(`variant ${variantId} of ${flags.model} is not registered (or is retired) on chain ${chainId}`);
      }
      const contracts = {
        staking: Staking__factory.connect(d.contracts.staking, signer),
        commitments: Commitments__factory.connect(d.contracts.commitments, signer),
        disputes: Disputes__factory.connect(d.contracts.disputes, signer),
        token: EFedToken__factory.connect(d.contracts.token, signer),
        ...(d.contracts.dataRequests === undefined ? {} : { dataRequests: DataRequests__factory.connect(d.contracts.dataRequests, signer) }),
        ...(d.contracts.auditLedger === undefined ? {} : { auditLedger: AuditLedger__factory.connect(d.contracts.auditLedger, signer) }),
      };
      await ensureVerifier(contracts, wallet.address, logger, flags.stake === undefined ? undefined : parseEther(flags.stake));
      const statePath = flags.state ?? join(flags.dataDir, `efed-verifier-${wallet.address}.sqlite`);
      const state = AuditState.open(statePath);
      const replayers = new ReplayShards(model, variantId, flags.threads);
      const daemon = new VerifierDaemon({
        key: wallet.signingKey,
        address: wallet.address,
        provider,
        chainId,
        contracts,
        replayers,
        state,
        sampleRate: flags.sampleRate,
        tolerance: toleranceFor(model.compression),
        logger,
        fromBlock: flags.fromBlock,
      });
      logger.info({ address: wallet.address, variantId, sampleRate: flags.sampleRate, state: statePath }, "verifying");
      let stopped = false;
      const stop = (): void => {
        stopped = true;
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      while (!stopped) {
        try {
          await daemon.runOnce();
        } catch (err) {
          logger.error({ err: (err as Error).message }, "round failed: tried again after --poll-ms");
        }
        for (let waited = 0; waited < flags.pollMs && !stopped; waited += 100) await new Promise((r) => setTimeout(r, Math.min(100, flags.pollMs - waited)));
      }
      logger.info("shutting down");
      state.close();
      await replayers.release();
      provider.destroy();
    });
}
