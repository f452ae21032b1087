import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Command, InvalidArgumentError as CommanderArgumentError } from "commander";
import { isHexString, parseUnits } from "ethers";
import { pino } from "pino";
import { buildManifest, readManifest, variantIdOf } from "../../engine/model/manifest.js";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { formatTime, formatTokens } from "../../protocol/contractErrors.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { connectOperator, type OperatorChain } from "../chain/operatorChain.js";
import { depositStake } from "../chain/operatorFunds.js";
import { readOperatorStatus, type OperatorStatus } from "../chain/operatorStatus.js";
import { registerServer } from "../chain/serverRegistration.js";
import { deregister, requestUnbond, withdrawStake } from "../chain/unbonding.js";
import { ensureVerifier } from "../verifier/registration.js";
import { DEFAULT_KEY_FILE, KEY_PASSWORD_ENV, encryptKeyFile, loadOperatorKey, loadOrCreateKey } from "./keyFile.js";
import { layerRange } from "./options.js";

const root = fileURLToPath(new URL("../..", import.meta.url));

/** Options every command that sends transactions for the operator's key takes. */
export interface ChainFlags {
  rpc: string;
  deployment?: string;
  key?: string;
  dataDir: string;
}

/** Adds --rpc, --deployment, --key and --data-dir (the server's key file) to `command`. */
export function withChainOptions(command: Command): Command {
  return command
    .option("--rpc <url>", "EVM JSON-RPC endpoint (default $EFED_RPC or http://127.0.0.1:8545)", process.env.EFED_RPC ?? "http://127.0.0.1:8545")
    .option("--deployment <file>", "contract addresses (default deployments/<chainId>.json)")
    .option("--key <file>", `file holding the private key (hex); default: $EFED_SERVER_KEY, else DATA_DIR/${DEFAULT_KEY_FILE}`)
    .option("--data-dir <dir>", "the server's data directory, where its key file lives (default $EFED_DATA_DIR or .)", process.env.EFED_DATA_DIR ?? ".");
}

/** Loads the key, connects to the chain and deployment, runs `fn`, and always closes the connection. */
export async function withOperatorChain<T>(flags: ChainFlags, fn: (c: OperatorChain) => Promise<T>): Promise<T> {
  const wallet = await loadOperatorKey(flags.key, flags.dataDir, askPassword);
  const c = await connectOperator({ rpc: flags.rpc, deploymentFile: flags.deployment, root, wallet });
  try {
    return await fn(c);
  } finally {
    c.provider.destroy();
  }
}

/** Asks for a password in the terminal, masked. */
async function askPassword(message: string): Promise<string> {
  const { default: password } = await import("@inquirer/password");
  return password({ message, mask: true });
}

/** The password that encrypts a key file: $EFED_KEY_PASSWORD, else asked twice in a terminal. */
async function newKeyPassword(): Promise<string> {
  const fromEnv = process.env[KEY_PASSWORD_ENV];
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  if (!process.stdin.isTTY) throw new InvalidArgumentError(`--encrypt needs a password: set ${KEY_PASSWORD_ENV}, or run it in a terminal to be asked`);
  const first = await askPassword("new password for the key file:");
  if ((await askPassword("the same password again:")) !== first) throw new InvalidArgumentError("the two passwords differ");
  return first;
}

/** "--amount 1500", "--stake 0.5": a decimal number of tokens (18 decimals) in base units. */
export function tokenAmount(value: string): bigint {
  const v = value.trim();
  if (!/^\d+(\.\d{1,18})?$/.test(v)) throw new CommanderArgumentError(`"${value}" is not an amount of tokens (e.g. 1500 or 0.5).`);
  return parseUnits(v, 18);
}

/** The variant id of a model directory (its manifest hash), or an id given directly. */
function variantOf(flags: { model?: string; variant?: string }): string {
  if ((flags.model === undefined) === (flags.variant === undefined)) throw new InvalidArgumentError("give either --model DIR or --variant ID");
  if (flags.variant !== undefined) {
    if (!isHexString(flags.variant, 32)) throw new InvalidArgumentError(`--variant "${flags.variant}" is not a 32-byte hex id (0x + 64 hex digits)`);
    return flags.variant;
  }
  const model = ModelDirectory.open(flags.model!);
  try {
    return variantIdOf(readManifest(flags.model!) ?? buildManifest(model));
  } finally {
    model.close();
  }
}

/** `efed operator`: stake, register, unbond and withdraw for the key a server or verifier signs with, and show where it stands. */
export function operatorCommand(): Command {
  const operator = new Command("operator").description(
    "stake and register the key your server or verifier signs with; every step checks what it can before sending a transaction",
  );

  operator.addCommand(
    new Command("key")
      .description(`print the operator's address; creates DATA_DIR/${DEFAULT_KEY_FILE} (mode 0600) when there is none`)
      .option("--key <file>", "an existing key file instead")
      .option("--data-dir <dir>", "the server's data directory (default $EFED_DATA_DIR or .)", process.env.EFED_DATA_DIR ?? ".")
      .option("--encrypt", `encrypt the key file into an ethers JSON keystore; the password comes from $${KEY_PASSWORD_ENV} or a prompt, never a flag (efed server then needs $${KEY_PASSWORD_ENV})`)
      .action(async (flags: { key?: string; dataDir: string; encrypt?: boolean }) => {
        const keyFromEnv = (process.env.EFED_SERVER_KEY ?? "").trim() !== "";
        const path = flags.key !== undefined ? resolve(flags.key) : keyFromEnv ? undefined : resolve(join(flags.dataDir, DEFAULT_KEY_FILE));
        const created = flags.key === undefined && path !== undefined && !existsSync(path);
        const wallet = created ? loadOrCreateKey(undefined, flags.dataDir, false).wallet : await loadOperatorKey(flags.key, flags.dataDir, askPassword);
        if (flags.encrypt === true) {
          if (path === undefined) throw new InvalidArgumentError("--encrypt encrypts a key file; this key comes from $EFED_SERVER_KEY");
          await encryptKeyFile(path, await newKeyPassword());
        }
        const encrypted = path !== undefined && readFileSync(path, "utf8").trim().startsWith("{");
        console.log(JSON.stringify({ address: wallet.address, keyFile: path ?? "$EFED_SERVER_KEY", created, encrypted }));
      }),
  );

  operator.addCommand(
    withChainOptions(new Command("deposit"))
      .description("deposit tokens as bonded stake (one transaction, with an EIP-2612 permit); checks the token and gas balance first")
      .requiredOption("--amount <tokens>", "tokens to deposit", tokenAmount)
      .action(async (flags: ChainFlags & { amount: bigint }) =>
        withOperatorChain(flags, async (c) => {
          await depositStake(c, flags.amount);
          const op = await c.staking.operator(c.address);
          console.log(`deposited ${formatTokens(flags.amount)}; ${c.address} has ${formatTokens(op.bonded)} bonded`);
        }),
      ),
  );

  operator.addCommand(
    withChainOptions(new Command("register-server"))
      .description(
        "register the key as a server of a variant's layer range, or update its endpoint, price or range; checks the variant, " +
          "the range, the role, that the stake (with --stake) covers the range's minimum and the balance before sending anything",
      )
      .option("--model <dir>", "model directory whose manifest names the variant")
      .option("--variant <id>", "variant id (manifest hash), instead of --model")
      .requiredOption("--layers <first:last>", "layers served, FIRST inclusive, LAST exclusive", layerRange)
      .requiredOption("--endpoint <url>", "WebSocket URL clients connect to (what efed server --public-url says)")
      .option("--price <tokens>", "price per token served, in tokens", tokenAmount, 0n)
      .option("--stake <tokens>", "deposit this many tokens first (with a permit)", tokenAmount, 0n)
      .action(
        async (flags: ChainFlags & { model?: string; variant?: string; layers: { first: number; last: number }; endpoint: string; price: bigint; stake: bigint }) => {
          const variantId = variantOf(flags);
          await withOperatorChain(flags, async (c) => {
            const { registrationId, neededWei } = await registerServer(c, {
              variantId,
              firstLayer: flags.layers.first,
              lastLayer: flags.layers.last,
              endpoint: flags.endpoint,
              pricePerTokenWei: flags.price,
              depositWei: flags.stake,
            });
            const op = await c.staking.operator(c.address);
            console.log(
              `${c.address} serves variant ${variantId} layers ${flags.layers.first}–${flags.layers.last - 1} at ${flags.endpoint} ` +
                `for ${formatTokens(flags.price)} per token (registration ${registrationId}; ${formatTokens(op.bonded)} bonded, ${formatTokens(neededWei)} needed)`,
            );
          });
        },
      ),
  );

  operator.addCommand(
    withChainOptions(new Command("register-verifier"))
      .description("register the key as a verifier; deposits what is missing up to the verifier minimum (or --stake) after checking the balance")
      .option("--stake <tokens>", "deposit this many tokens first (default: what is missing up to the minimum)", tokenAmount)
      .action(async (flags: ChainFlags & { stake?: bigint }) =>
        withOperatorChain(flags, async (c) => {
          const logger = pino({ level: process.env.EFED_LOG_LEVEL ?? "warn" });
          await ensureVerifier(c, c.address, logger, flags.stake);
          const op = await c.staking.operator(c.address);
          console.log(`${c.address} is a verifier with ${formatTokens(op.bonded)} bonded`);
        }),
      ),
  );

  operator.addCommand(
    withChainOptions(new Command("deregister"))
      .description("drop the server or verifier role; the stake stays bonded until you unbond it")
      .action(async (flags: ChainFlags) =>
        withOperatorChain(flags, async (c) => {
          await deregister(c);
          console.log(`${c.address} is no longer registered; its stake stays bonded (efed operator unbond)`);
        }),
      ),
  );

  operator.addCommand(
    withChainOptions(new Command("unbond"))
      .description("start unbonding stake; checks that what stays bonded still covers the role's minimum")
      .option("--amount <tokens>", "tokens to unbond (default: everything above the role's minimum)", tokenAmount)
      .action(async (flags: ChainFlags & { amount?: bigint }) =>
        withOperatorChain(flags, async (c) => {
          const r = await requestUnbond(c, flags.amount);
          const restarted = r.restartedWei > 0n ? ` (the ${formatTokens(r.restartedWei)} already unbonding waits again)` : "";
          console.log(`unbonding ${formatTokens(r.amountWei)}; withdrawable from ${formatTime(r.readyAt)}${restarted}`);
        }),
      ),
  );

  operator.addCommand(
    withChainOptions(new Command("withdraw"))
      .description("withdraw unbonded stake; checks that its time has come first")
      .action(async (flags: ChainFlags) =>
        withOperatorChain(flags, async (c) => {
          const amount = await withdrawStake(c);
          console.log(`withdrew ${formatTokens(amount)} to ${c.address}`);
        }),
      ),
  );

  operator.addCommand(
    withChainOptions(new Command("status"))
      .description("stake, locks, unbonding time, registration, trust, batches posted, vouchers redeemed and earnings")
      .option("--json", "print one JSON object (amounts in base units as strings)")
      .action(async (flags: ChainFlags & { json?: boolean }) =>
        withOperatorChain(flags, async (c) => {
          const status = await readOperatorStatus(c);
          console.log(flags.json === true ? JSON.stringify(status, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) : statusText(status));
        }),
      ),
  );
  return operator;
}

function statusText(s: OperatorStatus): string {
  const lines = [
    `operator   ${s.address} on chain ${s.chainId}, role: ${s.role}`,
    `balance    ${formatTokens(s.tokenBalanceWei)}`,
    `stake      ${formatTokens(s.stake.bondedWei)} bonded (${formatTokens(s.stake.freeWei)} free of disputes), ` +
      `${formatTokens(s.stake.lockedWei)} locked by disputes, ${formatTokens(s.stake.unbondingWei)} unbonding` +
      (s.stake.withdrawableAt === undefined ? "" : `, withdrawable from ${formatTime(s.stake.withdrawableAt)}`),
  ];
  if (s.server !== undefined) {
    const v = s.server;
    lines.push(
      `server     variant ${v.variantId} layers ${v.firstLayer}–${v.lastLayer - 1} at ${v.endpoint}, ${formatTokens(v.pricePerTokenWei)} per token`,
      `           minimum stake ${formatTokens(v.minimumStakeWei)}; active: ${v.active}, serving: ${v.serving}, eligible for channels: ${v.eligible}`,
    );
  }
  if (s.verifier !== undefined) lines.push(`verifier   active: ${s.verifier.active}, minimum stake ${formatTokens(s.verifier.minimumStakeWei)}`);
  const trust = Number(s.trust.scoreWad) / 1e18;
  lines.push(
    `trust      ${trust.toFixed(4)} (${s.trust.passedAudits} audits passed, ${s.trust.failedAudits} failed, ${formatTokens(s.trust.paidWorkWei)} paid work)`,
    `batches    ${s.batchesPosted} posted`,
    `earnings   ${s.redeemed.vouchers} vouchers redeemed: ${formatTokens(s.redeemed.earnedWei)} earned, ${formatTokens(s.redeemed.feesWei)} protocol fees`,
  );
  return lines.join("\n");
}
