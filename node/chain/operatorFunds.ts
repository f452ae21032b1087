import { formatEther } from "ethers";
import { contractCall, formatTokens } from "../../protocol/contractErrors.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import type { OperatorChain } from "./operatorChain.js";
import { signPermit } from "./permit.js";

/**
 * Checks that the operator can pay for what it is about to send: `tokensWei` of tokens, and some
 * native currency for gas. Called before the first transaction of a step, so a step that cannot
 * finish never starts.
 */
export async function checkFunds(c: OperatorChain, tokensWei: bigint): Promise<void> {
  const [balance, gas] = await Promise.all([c.token.balanceOf(c.address), c.provider.getBalance(c.address)]);
  if (balance < tokensWei) {
    throw new InvalidArgumentError(`${c.address} holds ${formatTokens(balance)}; this needs ${formatTokens(tokensWei)}: get tokens first`, {
      balanceWei: balance,
      neededWei: tokensWei,
    });
  }
  if (gas === 0n) throw new InvalidArgumentError(`${c.address} has no native currency (${formatEther(gas)}) to pay gas: fund it first`);
}

/** Deposits `amountWei` as bonded stake with an EIP-2612 permit (one transaction). Checks funds first. */
export async function depositStake(c: OperatorChain, amountWei: bigint): Promise<void> {
  if (amountWei <= 0n) throw new InvalidArgumentError(`the deposit must be more than 0 tokens, got ${formatTokens(amountWei)}`);
  await checkFunds(c, amountWei);
  const staking = await c.staking.getAddress();
  const permit = await signPermit(c.token, c.signer, staking, amountWei);
  await contractCall(`depositing ${formatTokens(amountWei)} as stake`, async () =>
    (await c.staking.depositWithPermit(amountWei, permit.deadline, permit.v, permit.r, permit.s)).wait(),
  );
}
