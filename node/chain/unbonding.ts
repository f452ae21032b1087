import { contractCall, formatTime, formatTokens } from "../../protocol/contractErrors.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import type { OperatorChain } from "./operatorChain.js";
import { ROLE } from "./serverRegistration.js";

/** What the operator must keep bonded while it holds its role (0 without one). */
async function minimumForRole(c: OperatorChain): Promise<bigint> {
  const op = await c.staking.operator(c.address);
  if (op.role === ROLE.Verifier) return (await c.staking.stakeParams()).verifierMinStake;
  if (op.role === ROLE.Server) {
    const s = await c.staking.server(c.address);
    return c.staking.minServerStake(s.lastLayer - s.firstLayer);
  }
  return 0n;
}

/**
 * Moves `amountWei` (undefined: everything above the role's minimum) from bonded to unbonding.
 * Checks first that the rest still covers the role's minimum; returns the amount and when it can be withdrawn.
 */
export async function requestUnbond(c: OperatorChain, amountWei: bigint | undefined): Promise<{ amountWei: bigint; readyAt: bigint; restartedWei: bigint }> {
  const op = await c.staking.operator(c.address);
  const minimum = await minimumForRole(c);
  const spare = op.bonded > minimum ? op.bonded - minimum : 0n;
  const amount = amountWei ?? spare;
  if (amount <= 0n) {
    throw new InvalidArgumentError(
      `${c.address} has ${formatTokens(op.bonded)} bonded and its role needs ${formatTokens(minimum)}: nothing can be unbonded` +
        (op.role === ROLE.None ? "" : "; deregister first (efed operator deregister) to unbond everything"),
    );
  }
  if (amount > op.bonded) throw new InvalidArgumentError(`${c.address} asked to unbond ${formatTokens(amount)} but has only ${formatTokens(op.bonded)} bonded`);
  if (amount > spare) {
    throw new InvalidArgumentError(
      `unbonding ${formatTokens(amount)} would leave ${formatTokens(op.bonded - amount)} bonded, below the ${formatTokens(minimum)} its role needs: ` +
        `unbond at most ${formatTokens(spare)}, or deregister first (efed operator deregister)`,
    );
  }
  await contractCall(`requesting to unbond ${formatTokens(amount)}`, async () => (await c.staking.requestUnbond(amount)).wait());
  // a new request restarts the delay for everything already unbonding: `restartedWei` tells the caller
  return { amountWei: amount, readyAt: await c.staking.withdrawableAt(c.address), restartedWei: op.unbonding };
}

/** Withdraws the unbonding stake once it is ready; checks there is some and that its time has come. */
export async function withdrawStake(c: OperatorChain): Promise<bigint> {
  const op = await c.staking.operator(c.address);
  if (op.unbonding === 0n) throw new InvalidArgumentError(`${c.address} has nothing unbonding: request unbonding first (efed operator unbond)`);
  const [readyAt, latest] = await Promise.all([c.staking.withdrawableAt(c.address), c.provider.getBlock("latest")]);
  const now = BigInt(latest?.timestamp ?? 0);
  if (now < readyAt) {
    throw new InvalidArgumentError(
      `${formatTokens(op.unbonding)} unbonding can be withdrawn from ${formatTime(readyAt)}; the chain's time is ${formatTime(now)}`,
    );
  }
  if (op.locked >= op.unbonding + op.bonded) throw new InvalidArgumentError(`all of ${c.address}'s stake is frozen by open disputes (${formatTokens(op.locked)})`);
  const before = await c.token.balanceOf(c.address);
  await contractCall("withdrawing the unbonded stake", async () => (await c.staking.withdraw()).wait());
  return (await c.token.balanceOf(c.address)) - before;
}

/** Drops the operator's role (its stake stays bonded until it unbonds). */
export async function deregister(c: OperatorChain): Promise<void> {
  const op = await c.staking.operator(c.address);
  if (op.role === ROLE.None) throw new InvalidArgumentError(`${c.address} is not registered as a server or verifier`);
  await contractCall("deregistering", async () => (await c.staking.deregister()).wait());
}
