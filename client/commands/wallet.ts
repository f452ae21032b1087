import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { Command } from "commander";
import { Wallet, formatEther, getAddress } from "ethers";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { DEFAULT_SCRYPT_N, keystoreAddress, writeKeystore } from "../wallet/keystore.js";
import { DEFAULT_WALLET_PATH, bytes32, openWallet, type OpenWallet } from "../wallet/openWallet.js";
import { askSecret, readPassword } from "../wallet/password.js";
import { fundTickets, ticketDeposit, unlockTickets, withdrawTickets, type TicketDeposit } from "../wallet/ticketDeposit.js";
import { balances, channelViews, closeChannel, openChannel, topUpChannel } from "../wallet/walletChain.js";
import { integer, positiveTokenAmount } from "./options.js";

/** Environment variable a key to import may come from (else it is asked for); never a flag. */
const IMPORT_KEY_ENV = "EFED_WALLET_IMPORT_KEY";

interface ChainFlags {
  wallet: string;
  rpc: string;
  deployment: string;
  json?: boolean;
}

const walletOption = (c: Command): Command => c.option("--wallet <file>", "encrypted keystore (default $EFED_WALLET or ~/.efed/wallet.json)", DEFAULT_WALLET_PATH);

function chainCommand(name: string, description: string): Command {
  return walletOption(new Command(name).description(description))
    .requiredOption("--rpc <url>", "EVM JSON-RPC endpoint")
    .requiredOption("--deployment <file>", "contract addresses (as npm run deploy writes them): the contracts this wallet trusts")
    .option("--json", "print JSON");
}

/** Runs `body` with the wallet open, and closes it however `body` ends. */
async function withWallet<T>(f: ChainFlags, body: (w: OpenWallet) => Promise<T>): Promise<T> {
  const w = await openWallet(f.wallet, f.rpc, f.deployment);
  try {
    return await body(w);
  } finally {
    w.close();
  }
}

/** The ticket deposit as `balance` and the ticket commands print it. */
function depositText(d: TicketDeposit): string {
  const unlock = d.withdrawableAt === 0n ? "" : ` (unlocking: withdrawable after ${new Date(Number(d.withdrawableAt) * 1000).toISOString()})`;
  return `ticket deposit: ${formatEther(d.deposit)} EFED, reserve ${formatEther(d.reserve)} EFED${unlock}`;
}

function print(json: boolean | undefined, value: Record<string, unknown>, text: string): void {
  console.log(json === true ? JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) : text);
}

/** `efed wallet`: a client's key (encrypted keystore), balances and payment channels. */
export function walletCommand(): Command {
  const create = (name: string, description: string, importing: boolean): Command =>
    walletOption(new Command(name).description(description))
      .option("--kdf-cost <n>", `scrypt cost N of the keystore, a power of two (default ${DEFAULT_SCRYPT_N})`, integer(2, 2 ** 24), DEFAULT_SCRYPT_N)
      .action(async (f: { wallet: string; kdfCost: number }) => {
        let wallet: Wallet;
        if (importing) {
          const key = process.env[IMPORT_KEY_ENV] ?? (await askSecret("the private key to import", `set ${IMPORT_KEY_ENV}`));
          try {
            wallet = new Wallet(key.trim());
          } catch {
            throw new InvalidArgumentError("the key to import is not a 32-byte hex private key");
          }
        } else wallet = new Wallet(Wallet.createRandom().privateKey);
        mkdirSync(dirname(f.wallet), { recursive: true });
        await writeKeystore(f.wallet, wallet, await readPassword(f.wallet, true), f.kdfCost);
        console.log(JSON.stringify({ wallet: f.wallet, address: wallet.address }));
      });

  return new Command("wallet")
    .description("a client's wallet: encrypted key, balances, payment channels, ticket deposit (password: prompt or $EFED_WALLET_PASSWORD)")
    .addCommand(create("create", "create a new key in an encrypted keystore", false))
    .addCommand(create("import", `import a private key (asked for, or $${IMPORT_KEY_ENV}) into an encrypted keystore`, true))
    .addCommand(
      walletOption(new Command("address").description("print the wallet's address (no password needed)")).action((f: { wallet: string }) => {
        console.log(keystoreAddress(f.wallet));
      }),
    )
    .addCommand(
      chainCommand("balance", "token and gas balances").action((f: ChainFlags) =>
        withWallet(f, async ({ chain }) => {
          const b = await balances(chain);
          const d = chain.deployment.ticketBroker === undefined ? undefined : await ticketDeposit(chain);
          const text = `${chain.address}\ntokens: ${formatEther(b.tokens)} EFED\ngas: ${formatEther(b.gas)}${d === undefined ? "" : `\n${depositText(d)}`}`;
          print(f.json, { address: chain.address, tokens: b.tokens, gas: b.gas, ...(d === undefined ? {} : { tickets: d }) }, text);
        }),
      ),
    )
    .addCommand(
      chainCommand("open", "open a payment channel to a server (one transaction, with a permit)")
        .requiredOption("--server <address>", "the server's address", (v: string) => getAddress(v))
        .requiredOption("--amount <tokens>", "deposit, in tokens", positiveTokenAmount)
        .action((f: ChainFlags & { server: string; amount: bigint }) =>
          withWallet(f, async ({ chain, ledger }) => {
            const c = await openChannel(chain, ledger, f.server, f.amount);
            print(f.json, { channelId: c.channelId, server: c.server, deposit: c.deposit }, `opened channel ${c.channelId} to ${c.server} with ${formatEther(c.deposit)} EFED`);
          }),
        ),
    )
    .addCommand(
      chainCommand("top-up", "add tokens to a channel's deposit")
        .requiredOption("--channel <id>", "channel id", bytes32)
        .requiredOption("--amount <tokens>", "tokens to add", positiveTokenAmount)
        .action((f: ChainFlags & { channel: string; amount: bigint }) =>
          withWallet(f, async ({ chain, ledger }) => {
            const deposit = await topUpChannel(chain, ledger, f.channel, f.amount);
            print(f.json, { channelId: f.channel, deposit }, `channel ${f.channel} now holds ${formatEther(deposit)} EFED`);
          }),
        ),
    )
    .addCommand(
      chainCommand("close", "start closing a channel (the server may redeem until the close timeout), or finish a close whose timeout passed")
        .requiredOption("--channel <id>", "channel id", bytes32)
        .action((f: ChainFlags & { channel: string }) =>
          withWallet(f, async ({ chain, ledger }) => {
            const r = await closeChannel(chain, ledger, f.channel);
            const text = r.state === "closed" ? `channel ${f.channel} is closed; the rest of its deposit is back` : `channel ${f.channel} is closing; finish it after ${new Date(Number(r.readyAt) * 1000).toISOString()}`;
            print(f.json, { channelId: f.channel, state: r.state, readyAt: r.readyAt }, text);
          }),
        ),
    )
    .addCommand(
      chainCommand("fund", "add to the ticket deposit (what tickets are paid from) and its reserve, in one transaction with a permit")
        .requiredOption("--amount <tokens>", "tokens to add to the deposit", positiveTokenAmount)
        .option("--reserve <tokens>", "tokens to add to the reserve (servers draw on it when the deposit runs short; default none)", positiveTokenAmount)
        .action((f: ChainFlags & { amount: bigint; reserve?: bigint }) =>
          withWallet(f, async ({ chain }) => {
            const d = await fundTickets(chain, f.amount, f.reserve ?? 0n);
            print(f.json, { ...d }, depositText(d));
          }),
        ),
    )
    .addCommand(
      chainCommand("unlock", "start taking the ticket deposit back: servers stop accepting tickets; withdraw after the broker's unlock period").action((f: ChainFlags) =>
        withWallet(f, async ({ chain }) => {
          const d = await unlockTickets(chain);
          print(f.json, { ...d }, depositText(d));
        }),
      ),
    )
    .addCommand(
      chainCommand("withdraw", "take the whole ticket deposit and reserve back (after unlock and its period)").action((f: ChainFlags) =>
        withWallet(f, async ({ chain }) => {
          const amount = await withdrawTickets(chain);
          print(f.json, { withdrawn: amount }, `withdrew ${formatEther(amount)} EFED from the ticket deposit`);
        }),
      ),
    )
    .addCommand(
      chainCommand("channels", "list the wallet's channels: deposit, signed, paid (redeemed by the server), owed (signed, not redeemed)").action((f: ChainFlags) =>
        withWallet(f, async ({ chain, ledger }) => {
          const views = await channelViews(chain, ledger);
          if (f.json === true) return print(true, { channels: views }, "");
          for (const v of views) {
            console.log(
              `${v.channelId} ${v.state} server ${v.server} deposit ${formatEther(v.deposit)} signed ${formatEther(v.cumulative)} paid ${formatEther(v.paid)} owed ${formatEther(v.owed)} left ${formatEther(v.remaining)}`,
            );
          }
        }),
      ),
    );
}
