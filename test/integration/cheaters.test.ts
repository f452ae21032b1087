import { join } from "node:path";
import { Wallet } from "ethers";
import { beforeAll, describe, expect, it } from "vitest";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { tinyConfig, writeRandomModel } from "../../engine/model/randomModel.js";
import { Shard } from "../../engine/runtime/shard.js";
import { DEVNET_PARAMS } from "../../scripts/lib/deployProtocol.js";
import { faultyShard, withholdSteps, type Fault } from "../../scripts/devnet/faultyShard.js";
import { DEV_KEYS, FAULT_FROM, FULL_BOND, SERVER_STAKE, useVerifierChain, type StakedServer, type VerifierChain } from "../node/verifier/chainHarness.js";

/**
 * Every kind of cheating, caught through the chain. One Hardhat node, one deployment, one set of
 * verifiers (a challenger auditing every receipt, three committee members) and an honest route:
 * server A for layers 0:2, server B for 2:4. A client generates over A → B, and over A → each
 * cheater, a server registered for layers 2:4 under its own key that cheats from decode step 3 on
 * (scripts/devnet/faultyShard.ts: a wrapper for tests and the devnet, no production flag): noise ±0.01, skipped
 * layers, 1 of its 2 layers, another model's weights, fp16 inside, or withholding its stored steps
 * from FetchStep. Every server posts its receipts. Then one audit round, one committee round: each
 * cheater is challenged once, found at fault by all three members, slashed, its trust falls
 * below θ, the challenger is paid; A and B are audited (every receipt passes) and never challenged.
 */
const extraShards: Shard[] = [];
const env = useVerifierChain("cheaters-model", async () => {
  for (const s of extraShards) await s.release();
});
let net: VerifierChain;
beforeAll(() => (net = env.net));

async function load(model: ModelDirectory, first: number, last: number): Promise<Shard> {
  const shard = await Shard.load(model, first, last);
  extraShards.push(shard);
  return shard;
}

/** Each cheater, as the layers-2:4 server it registers: how it is made to cheat. */
const CHEATERS: { kind: string; start: () => Promise<StakedServer> }[] = [
  { kind: "noise ±0.01", start: () => cheat({ kind: "noise", amplitude: 0.01 }) },
  { kind: "skipped layers", start: () => cheat({ kind: "skip" }) },
  { kind: "fewer layers (1 of 2)", start: async () => cheat({ kind: "fewerLayers", lesser: await load(net.model, 2, 3) }) },
  {
    kind: "another variant's weights",
    start: async () => {
      const dir = join(env.scratch, "cheaters-other");
      writeRandomModel(dir, tinyConfig({ hidden_size: 64, intermediate_size: 96, max_position_embeddings: 256 }), { seed: 8, dtype: "F32", std: 0.15 });
      return cheat({ kind: "otherWeights", other: await load(ModelDirectory.open(dir), 2, 4) });
    },
  },
  { kind: "lower precision (fp16 inside)", start: () => cheat({ kind: "lowerPrecision" }) },
  {
    kind: "withholding FetchStep",
    start: async () => {
      const s = await net.stakedServer({ first: 2, last: 4 });
      withholdSteps(s.running.store, 3n);
      return s;
    },
  },
];

function cheat(fault: Fault): Promise<StakedServer> {
  return net.stakedServer({ first: 2, last: 4, wrap: (shard) => faultyShard(shard, fault, FAULT_FROM) });
}

describe("cheating servers on a chain", () => {
  it("challenges, slashes and distrusts every kind of cheater, pays the challenger, and never challenges the honest route", async () => {
    const { challenger } = await net.crew();
    const { token, staking, disputes, trust } = net.readers();
    const challengerAddress = new Wallet(DEV_KEYS[0]!).address;
    const bond = FULL_BOND;
    await net.mint(challengerAddress, BigInt(CHEATERS.length - 1) * bond); // the crew holds one bond: one per cheater
    const a = await net.stakedServer({ first: 0, last: 2 });
    const b = await net.stakedServer({ first: 2, last: 4 });
    const cheaters: StakedServer[] = [];
    for (const c of CHEATERS) cheaters.push(await c.start());

    const honestBatches = await net.serveAndCommit([a, b]);
    for (const c of cheaters) honestBatches.push(...(await net.serveAndCommit([a, c])).slice(0, 1));
    await net.mine(); // the block whose hash seeds the sample
    const honest = [a, b].map((s) => s.running.wallet.address);
    const trustBefore = await Promise.all(honest.map((s) => trust.trustOf(s)));
    const balanceBefore = await token.balanceOf(challengerAddress);

    // the audit round: 14 batches of 8 receipts; each cheater fails (or withholds) steps 3..7 of its session
    const round = await challenger.runOnce();
    expect({ ...round, challenged: round.challenged.length }).toMatchObject({ batches: 2 + 2 * CHEATERS.length, audited: 8 * (2 + 2 * CHEATERS.length), failed: 5 * CHEATERS.length, challenged: CHEATERS.length });
    const state = net.states[0]!;
    for (const batchId of honestBatches) {
      const leaves = [a, b].map((s) => s.running.store.batchLeaves(batchId)).find((l) => l !== undefined)!;
      expect(leaves.map((leaf) => state.audit(leaf)?.verdict)).toEqual(Array.from({ length: 8 }, () => "pass"));
    }
    const disputeIds = round.challenged;
    for (const [i, id] of disputeIds.entries()) {
      const d = await disputes.dispute(id);
      expect([CHEATERS[i]!.kind, d.server, d.challenger]).toEqual([CHEATERS[i]!.kind, cheaters[i]!.running.wallet.address, challengerAddress]);
      const expected = i === CHEATERS.length - 1 ? /^step 3 of session 0x[0-9a-f]{64}: withheld: SERVER_19:/ : /^step 3 of session 0x[0-9a-f]{64}: output: output differs from the recomputation/;
      expect([CHEATERS[i]!.kind, state.audit(d.receiptLeaf)?.reason]).toEqual([CHEATERS[i]!.kind, expect.stringMatching(expected)]);
    }

    // the committee round: every member finds every cheater at fault, the last reveal settles all
    const { commits, reveals } = await net.runCommittee(disputeIds[0]!);
    expect(commits).toEqual([disputeIds, disputeIds, disputeIds]);
    expect(reveals.map((r) => r.revealed)).toEqual([disputeIds, disputeIds, disputeIds]);
    expect(reveals[2]!.settled).toEqual(disputeIds);

    const slash = DEVNET_PARAMS.disputes.serverSlash;
    const toChallenger = (slash * DEVNET_PARAMS.disputes.challengerShareBps) / 10_000n;
    const distrusted = await net.trustAfterOneFailure();
    const theta = (await trust.params()).threshold;
    expect(distrusted).toBeLessThan(theta);
    for (const [i, c] of cheaters.entries()) {
      const address = c.running.wallet.address;
      const d = await disputes.dispute(disputeIds[i]!);
      const outcome = { kind: CHEATERS[i]!.kind, status: d.status, outcome: d.outcome, fault: d.faultVotes, correct: d.correctVotes };
      expect(outcome).toEqual({ kind: CHEATERS[i]!.kind, status: 3n, outcome: 1n, fault: 3n, correct: 0n });
      expect([CHEATERS[i]!.kind, (await staking.operator(address)).bonded]).toEqual([CHEATERS[i]!.kind, SERVER_STAKE - slash]);
      expect([CHEATERS[i]!.kind, await trust.trustOf(address), await trust.isTrusted(address)]).toEqual([CHEATERS[i]!.kind, distrusted, false]);
    }
    // the challenger: its bonds came back, and its share of every slash
    expect(await token.balanceOf(challengerAddress)).toBe(balanceBefore + BigInt(CHEATERS.length) * toChallenger);

    // the honest route: no dispute names it, its stake is whole, no failed audit, its trust did not fall
    const accused = await Promise.all(Array.from({ length: Number(await disputes.disputeCount()) }, (_, i) => disputes.dispute(BigInt(i + 1))));
    expect(accused.filter((d) => honest.includes(d.server))).toEqual([]);
    for (const [i, s] of honest.entries()) {
      expect((await staking.operator(s)).bonded).toBe(SERVER_STAKE);
      expect((await trust.record(s)).failedAudits).toBe(0n);
      expect(await trust.trustOf(s)).toBeGreaterThanOrEqual(trustBefore[i]!);
    }
  }, 180_000);
});
