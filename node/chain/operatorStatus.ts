import type { OperatorChain } from "./operatorChain.js";
import { ROLE } from "./serverRegistration.js";

/** Blocks asked for in one eth_getLogs request (public nodes cap the range). */
export const LOG_QUERY_BLOCKS = 10_000;

/** An operator's standing on chain, in base units and unix seconds. */
export interface OperatorStatus {
  address: string;
  chainId: string;
  role: "none" | "server" | "verifier";
  tokenBalanceWei: bigint;
  stake: { bondedWei: bigint; freeWei: bigint; unbondingWei: bigint; lockedWei: bigint; withdrawableAt: bigint | undefined };
  server:
    | {
        variantId: string;
        firstLayer: number;
        lastLayer: number;
        endpoint: string;
        pricePerTokenWei: bigint;
        registrationId: bigint;
        minimumStakeWei: bigint;
        active: boolean;
        serving: boolean;
        eligible: boolean;
      }
    | undefined;
  verifier: { active: boolean; minimumStakeWei: bigint } | undefined;
  trust: { scoreWad: bigint; passedAudits: bigint; failedAudits: bigint; paidWorkWei: bigint };
  batchesPosted: bigint;
  /** Vouchers redeemed on channels to this operator, what reached it and what went to fees. */
  redeemed: { vouchers: number; earnedWei: bigint; feesWei: bigint };
}

/** Reads everything `efed operator status` shows. Redemptions come from the channels' events since the deployment block. */
export async function readOperatorStatus(c: OperatorChain): Promise<OperatorStatus> {
  const a = c.address;
  const [op, free, balance, withdrawableAt, record, score, batches] = await Promise.all([
    c.staking.operator(a),
    c.staking.freeBonded(a),
    c.token.balanceOf(a),
    c.staking.withdrawableAt(a),
    c.trust.record(a),
    c.trust.trustOf(a),
    c.commitments.serverBatchCount(a),
  ]);
  const role = op.role === ROLE.Server ? "server" : op.role === ROLE.Verifier ? "verifier" : "none";
  let server: OperatorStatus["server"];
  if (role === "server") {
    const s = await c.staking.server(a);
    const [minimumStakeWei, active, serving, eligible] = await Promise.all([
      c.staking.minServerStake(s.lastLayer - s.firstLayer),
      c.staking.isActiveServer(a),
      c.staking.isServing(a),
      c.staking.isEligible(a),
    ]);
    server = {
      variantId: s.variant,
      firstLayer: Number(s.firstLayer),
      lastLayer: Number(s.lastLayer),
      endpoint: s.endpoint,
      pricePerTokenWei: s.pricePerToken,
      registrationId: s.registrationId,
      minimumStakeWei,
      active,
      serving,
      eligible,
    };
  }
  const verifier =
    role === "verifier" ? { active: await c.staking.isActiveVerifier(a), minimumStakeWei: (await c.staking.stakeParams()).verifierMinStake } : undefined;
  return {
    address: a,
    chainId: c.chainId.toString(),
    role,
    tokenBalanceWei: balance,
    stake: {
      bondedWei: op.bonded,
      freeWei: free,
      unbondingWei: op.unbonding,
      lockedWei: op.locked,
      withdrawableAt: op.unbonding > 0n ? withdrawableAt : undefined,
    },
    server,
    verifier,
    trust: { scoreWad: score, passedAudits: record.passedAudits, failedAudits: record.failedAudits, paidWorkWei: record.paidWork },
    batchesPosted: batches,
    redeemed: await readRedemptions(c),
  };
}

/** Sums VoucherRedeemed over every channel opened to the operator (ChannelOpened indexes the server). */
async function readRedemptions(c: OperatorChain): Promise<OperatorStatus["redeemed"]> {
  const latest = await c.provider.getBlockNumber();
  const channelIds: string[] = [];
  await forEachRange(c.deploymentBlock, latest, async (from, to) => {
    for (const e of await c.channels.queryFilter(c.channels.filters.ChannelOpened(undefined, undefined, c.address), from, to)) channelIds.push(e.args.channelId);
  });
  const result = { vouchers: 0, earnedWei: 0n, feesWei: 0n };
  if (channelIds.length === 0) return result;
  await forEachRange(c.deploymentBlock, latest, async (from, to) => {
    // topic lists are bounded by the node; ask per channel batch of 100
    for (let i = 0; i < channelIds.length; i += 100) {
      const filter = c.channels.filters.VoucherRedeemed(channelIds.slice(i, i + 100) as unknown as string);
      for (const e of await c.channels.queryFilter(filter, from, to)) {
        result.vouchers++;
        result.earnedWei += e.args.paidToServer;
        result.feesWei += e.args.fee;
      }
    }
  });
  return result;
}

async function forEachRange(from: number, to: number, fn: (from: number, to: number) => Promise<void>): Promise<void> {
  for (let start = from; start <= to; start += LOG_QUERY_BLOCKS) await fn(start, Math.min(to, start + LOG_QUERY_BLOCKS - 1));
}
