import { contractCall, formatTokens } from "../../protocol/contractErrors.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { checkFunds, depositStake } from "./operatorFunds.js";
import type { OperatorChain } from "./operatorChain.js";

/** Staking's Role enum (contracts/interfaces/IStaking.sol). */
export const ROLE = { None: 0n, Server: 1n, Verifier: 2n } as const;

export interface ServerRegistrationRequest {
  variantId: string;
  firstLayer: number;
  /** Exclusive. */
  lastLayer: number;
  endpoint: string;
  pricePerTokenWei: bigint;
  /** Tokens deposited as stake before registering (0: none). */
  depositWei: bigint;
}

/**
 * Everything `registerServer` checks before it sends anything: the variant is registered and active,
 * the range fits its layers, the endpoint's length, the key holds no verifier role, the stake
 * (bonded free of disputes, plus the deposit) covers the range's minimum, and the balance covers the
 * deposit. A registration that cannot succeed thus never deposits first and leaves tokens behind.
 */
export async function checkServerRegistration(c: OperatorChain, r: ServerRegistrationRequest): Promise<{ neededWei: bigint }> {
  const { variantId, firstLayer, lastLayer } = r;
  if (!(await c.registry.isActive(variantId))) {
    throw new InvalidArgumentError(
      `variant ${variantId} is not registered (or is retired) on chain ${c.chainId}: register it with efed model register DIR (needs the registrar role)`,
    );
  }
  const numLayers = Number((await c.registry.variant(variantId)).numLayers);
  if (firstLayer >= lastLayer || lastLayer > numLayers) {
    throw new InvalidArgumentError(`layers ${firstLayer}:${lastLayer} are not a non-empty range within the variant's ${numLayers} layers`);
  }
  const maxEndpoint = Number(await c.staking.MAX_ENDPOINT_LENGTH());
  const endpointBytes = new TextEncoder().encode(r.endpoint).length;
  if (endpointBytes === 0 || endpointBytes > maxEndpoint) {
    throw new InvalidArgumentError(`the endpoint "${r.endpoint}" is ${endpointBytes} bytes long; it must be 1 to ${maxEndpoint} bytes`);
  }
  const op = await c.staking.operator(c.address);
  if (op.role === ROLE.Verifier) {
    throw new InvalidArgumentError(`${c.address} is registered as a verifier; a server needs its own key (or deregister the verifier first)`);
  }
  const [neededWei, freeWei] = await Promise.all([c.staking.minServerStake(lastLayer - firstLayer), c.staking.freeBonded(c.address)]);
  if (freeWei + r.depositWei < neededWei) {
    const missing = neededWei - freeWei - r.depositWei;
    throw new InvalidArgumentError(
      `${c.address} has ${formatTokens(freeWei)} bonded free of disputes${r.depositWei > 0n ? ` plus a deposit of ${formatTokens(r.depositWei)}` : ""}; ` +
        `serving layers ${firstLayer}–${lastLayer - 1} needs ${formatTokens(neededWei)}: deposit ${formatTokens(missing)} more (--stake)`,
      { neededWei, freeWei },
    );
  }
  if (r.depositWei > 0n) await checkFunds(c, r.depositWei);
  return { neededWei };
}

/**
 * Registers (or updates) the operator as a server after `checkServerRegistration`: deposits first
 * when asked, then registers. If registering still fails after the deposit (the chain changed in
 * between), the error says the deposit stays bonded and how to take it back.
 */
export async function registerServer(c: OperatorChain, r: ServerRegistrationRequest): Promise<{ registrationId: bigint; neededWei: bigint }> {
  const { neededWei } = await checkServerRegistration(c, r);
  if (r.depositWei > 0n) await depositStake(c, r.depositWei);
  const action = `registering for variant ${r.variantId} layers ${r.firstLayer}–${r.lastLayer - 1}`;
  try {
    await contractCall(action, async () => (await c.staking.registerServer(r.variantId, r.firstLayer, r.lastLayer, r.endpoint, r.pricePerTokenWei)).wait());
  } catch (err) {
    if (r.depositWei > 0n) {
      (err as Error).message +=
        ` (the deposit of ${formatTokens(r.depositWei)} stays bonded to ${c.address}: register again, or take it back with efed operator unbond and withdraw)`;
    }
    throw err;
  }
  const server = await c.staking.server(c.address);
  return { registrationId: server.registrationId, neededWei };
}
