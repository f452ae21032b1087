import { JsonRpcProvider, NonceManager, Signature, formatEther, type TransactionReceipt, type Wallet } from "ethers";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { PERMIT_TYPES, voucherDomain } from "../../protocol/eip712.js";
import {
  EFedToken__factory,
  PaymentChannels__factory,
  Staking__factory,
  type EFedToken,
  type PaymentChannels,
  type Staking,
} from "../../types/ethers-contracts/index.js";
import type { ClientDeployment } from "../route/deploymentFile.js";
import type { Ledger, LedgerChannel } from "./ledger.js";
import { WalletError } from "./walletError.js";

/** The wallet's key on a chain, with the contracts it pays through. */
export interface WalletChain {
  address: string;
  wallet: Wallet;
  /** Sends the wallet's transactions one after another (no nonce reused). */
  signer: NonceManager;
  deployment: ClientDeployment;
  token: EFedToken;
  staking: Staking;
  channels: PaymentChannels;
}

/** Connects `wallet` to `rpc`, checking the chain is the deployment's. */
export async function connectWalletChain(wallet: Wallet, rpc: string, deployment: ClientDeployment): Promise<WalletChain> {
  const provider = new JsonRpcProvider(rpc, undefined, { staticNetwork: true });
  const chainId = (await provider.getNetwork()).chainId;
  if (chainId !== deployment.chainId) {
    provider.destroy();
    throw new InvalidArgumentError(`the deployment file is for chain ${deployment.chainId}, ${rpc} is chain ${chainId}: pass the deployment of that chain`);
  }
  const signer = new NonceManager(wallet.connect(provider));
  return {
    address: wallet.address,
    wallet: wallet.connect(provider),
    signer,
    deployment,
    token: EFedToken__factory.connect(deployment.token, signer),
    staking: Staking__factory.connect(deployment.staking, signer),
    channels: PaymentChannels__factory.connect(deployment.channels, signer),
  };
}

export function disconnect(c: WalletChain): void {
  c.wallet.provider?.destroy();
}

export function channelsDomain(c: WalletChain): ReturnType<typeof voucherDomain> {
  return voucherDomain(c.deployment.chainId, c.deployment.channels);
}

/**
 * Sends a transaction and waits for it to be mined. A send that fails resets the nonce manager (it
 * counted the nonce already): the wallet's next transaction must not skip one.
 */
export async function mined(c: WalletChain, send: () => Promise<{ wait(): Promise<TransactionReceipt | null> }>): Promise<TransactionReceipt> {
  try {
    const receipt = await (await send()).wait();
    if (receipt === null) throw new Error("the transaction was dropped");
    return receipt;
  } catch (err) {
    c.signer.reset();
    throw err;
  }
}

/** Token and gas balances, in base units. */
export async function balances(c: WalletChain): Promise<{ tokens: bigint; gas: bigint }> {
  const [tokens, gas] = await Promise.all([c.token.balanceOf(c.address), c.wallet.provider!.getBalance(c.address)]);
  return { tokens, gas };
}

export async function requireTokens(c: WalletChain, amount: bigint, what: string): Promise<void> {
  const { tokens, gas } = await balances(c);
  if (tokens < amount) {
    throw new WalletError("WALLET_INSUFFICIENT_BALANCE", `${c.address} has ${formatEther(tokens)} EFED, ${what} needs ${formatEther(amount)}`);
  }
  if (gas === 0n) throw new WalletError("WALLET_INSUFFICIENT_BALANCE", `${c.address} has no gas (native currency) to send the transaction`);
}

/** An EIP-2612 permit letting `spender` take `amount` of the wallet's tokens, valid an hour by the chain's clock. */
export async function signPermit(c: WalletChain, spender: string, amount: bigint): Promise<{ deadline: bigint; permit: Signature }> {
  const [name, nonce, provider] = [await c.token.name(), await c.token.nonces(c.address), c.wallet.provider!];
  const block = await provider.getBlock("latest");
  const deadline = BigInt(block!.timestamp) + 3600n;
  const domain = { name, version: "1", chainId: c.deployment.chainId, verifyingContract: c.deployment.token };
  const permit = Signature.from(await c.wallet.signTypedData(domain, PERMIT_TYPES, { owner: c.address, spender, value: amount, nonce, deadline }));
  return { deadline, permit };
}

/**
 * Opens a channel to `server` with `amount` in one transaction (an EIP-2612 permit instead of an
 * approval), after checking the server is eligible (registered, serving, past probation, trusted)
 * and the wallet holds the tokens; records it in the ledger.
 */
export async function openChannel(c: WalletChain, ledger: Ledger, server: string, amount: bigint): Promise<LedgerChannel> {
  if (amount <= 0n) throw new InvalidArgumentError(`a channel deposit must be positive, got ${amount}`);
  if (!(await c.staking.isEligible(server))) {
    throw new WalletError("WALLET_SERVER_NOT_ELIGIBLE", `${server} is not an eligible server (not registered or deregistered, in probation, or trusted below the threshold): no channel opened`);
  }
  await requireTokens(c, amount, "the channel's deposit");
  const { deadline, permit } = await signPermit(c, c.deployment.channels, amount);
  const receipt = await mined(c, () => c.channels.openWithPermit(server, amount, deadline, permit.v, permit.r, permit.s));
  const opened = receipt.logs.map((l) => c.channels.interface.parseLog(l)).find((e) => e?.name === "ChannelOpened");
  if (opened === undefined || opened === null) throw new Error(`transaction ${receipt.hash} opened no channel`);
  const channelId = opened.args.channelId as string;
  ledger.addChannel({ channelId, chainId: c.deployment.chainId, contract: c.deployment.channels, server, deposit: amount });
  return ledger.get(channelId)!;
}

function own(ledger: Ledger, c: WalletChain, channelId: string): LedgerChannel {
  const ch = ledger.get(channelId);
  if (ch === undefined || ch.contract !== c.deployment.channels || ch.chainId !== c.deployment.chainId) {
    throw new WalletError("WALLET_UNKNOWN_CHANNEL", `channel ${channelId} is not one of this wallet's on chain ${c.deployment.chainId}`);
  }
  return ch;
}

/** Adds `amount` to a channel's deposit (approve, then top up). */
export async function topUpChannel(c: WalletChain, ledger: Ledger, channelId: string, amount: bigint): Promise<bigint> {
  own(ledger, c, channelId);
  if (amount <= 0n) throw new InvalidArgumentError(`a top-up must be positive, got ${amount}`);
  await requireTokens(c, amount, "the top-up");
  await mined(c, () => c.token.approve(c.deployment.channels, amount));
  await mined(c, () => c.channels.topUp(channelId, amount));
  const deposit = (await c.channels.channel(channelId)).deposit;
  ledger.setDeposit(channelId, deposit);
  return deposit;
}

/**
 * Closes a channel: starts the close (the server has the close timeout to redeem), or finishes it
 * when the timeout has passed. Returns the state it is in now.
 */
export async function closeChannel(c: WalletChain, ledger: Ledger, channelId: string): Promise<{ state: "closing" | "closed"; readyAt: bigint }> {
  own(ledger, c, channelId);
  const on = await c.channels.channel(channelId);
  if (on.closed) {
    ledger.setState(channelId, "closed");
    return { state: "closed", readyAt: on.closeReadyAt };
  }
  if (on.closeReadyAt === 0n) {
    await mined(c, () => c.channels.startClose(channelId));
    ledger.setState(channelId, "closing");
    return { state: "closing", readyAt: (await c.channels.channel(channelId)).closeReadyAt };
  }
  await mined(c, () => c.channels.finishClose(channelId));
  ledger.setState(channelId, "closed");
  return { state: "closed", readyAt: on.closeReadyAt };
}

/** A channel with what its server redeemed (paid) and what the wallet signed but the server has not redeemed (owed). */
export interface ChannelView extends LedgerChannel {
  paid: bigint;
  owed: bigint;
  remaining: bigint;
}

export async function channelViews(c: WalletChain, ledger: Ledger): Promise<ChannelView[]> {
  return Promise.all(
    ledger.list(c.deployment.chainId, c.deployment.channels).map(async (ch) => {
      const on = await c.channels.channel(ch.channelId);
      const state = on.closed ? "closed" : on.closeReadyAt !== 0n ? "closing" : "open";
      if (state !== ch.state) ledger.setState(ch.channelId, state);
      return { ...ch, state, deposit: on.deposit, paid: on.paid, owed: ch.cumulative - on.paid, remaining: on.deposit - ch.cumulative } as ChannelView;
    }),
  );
}
