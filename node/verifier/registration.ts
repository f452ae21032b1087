import { formatEther } from "ethers";
import type { Logger } from "pino";
import { InvalidArgumentError } from "../../protocol/errors.js";
import type { EFedToken, Staking } from "../../types/ethers-contracts/index.js";
import { chainCall } from "./chainErrors.js";

/** Staking's Role enum (contracts/interfaces/IStaking.sol). */
const ROLE_SERVER = 1n;

/**
 * Makes `address` an active verifier: deposits `stakeWei` (default: what is missing up to the
 * verifier minimum) after checking the token balance covers it, then registers. Does nothing when
 * it already is one. An address registered as a server cannot verify (the roles are exclusive).
 */
export async function ensureVerifier(
  c: { staking: Staking; token: EFedToken },
  address: string,
  logger: Logger,
  stakeWei?: bigint,
): Promise<void> {
  if (await c.staking.isActiveVerifier(address)) {
    logger.info({ address }, "already an active verifier");
    return;
  }
  const operator = await c.staking.operator(address);
  if (operator.role === ROLE_SERVER) throw new InvalidArgumentError(`${address} is registered as a server; a verifier needs its own key`);
  const minimum = (await c.staking.stakeParams()).verifierMinStake;
  const missing = minimum > operator.bonded ? minimum - operator.bonded : 0n;
  const deposit = stakeWei ?? missing;
  if (operator.bonded + deposit < minimum) {
    throw new InvalidArgumentError(
      `--stake ${formatEther(deposit)} leaves ${address} with ${formatEther(operator.bonded + deposit)} bonded, below the verifier minimum of ${formatEther(minimum)}`,
    );
  }
  if (deposit > 0n) {
    const balance = await c.token.balanceOf(address);
    if (balance < deposit) {
      throw new InvalidArgumentError(`${address} holds ${formatEther(balance)} tokens, the stake needs ${formatEther(deposit)}`);
    }
    const staking = await c.staking.getAddress();
    await chainCall("approving the stake", async () => (await c.token.approve(staking, deposit)).wait());
    await chainCall("depositing the stake", async () => (await c.staking.deposit(deposit)).wait());
    logger.info({ address, stake: formatEther(deposit) }, "stake deposited");
  }
  await chainCall("registering as a verifier", async () => (await c.staking.registerVerifier()).wait());
  logger.info({ address }, "registered as a verifier");
}
