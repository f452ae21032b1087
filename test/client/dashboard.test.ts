import { Wallet, parseEther } from "ethers";
import Fastify from "fastify";
import { beforeAll, describe, expect, it } from "vitest";
import { ChainWatch } from "../../client/dashboard/chainWatch.js";
import { Dashboard } from "../../client/dashboard/dashboard.js";
import { mountDashboard } from "../../client/dashboard/routes.js";
import type { DashboardEvent, ServerView, Snapshot } from "../../client/dashboard/snapshot.js";
import { voucherDomain } from "../../protocol/eip712.js";
import { signVoucher } from "../../protocol/voucher.js";
import { DEVNET_PARAMS } from "../../scripts/lib/deployProtocol.js";
import { AuditLedger__factory, EFedToken__factory, PaymentChannels__factory, VerifierRewards__factory } from "../../types/ethers-contracts/index.js";
import { DEV_KEYS, SERVER_STAKE, useVerifierChain, type StakedServer, type VerifierChain } from "../node/verifier/chainHarness.js";
import { dashboardScene } from "../browser/scene.js";

/**
 * The dashboard's state on a real chain (test/node/verifier/chainHarness.ts): three staked servers
 * (A 0:2, B 2:4, cheater C 2:4), a paid channel to A, batches posted, a dispute of C opened, voted
 * and settled with a slash. After each stage one poll must show exactly what the contracts say.
 */
const env = useVerifierChain("dashboard-model", async () => {
  await dashboard?.close();
});
let net: VerifierChain;
let dashboard: Dashboard | undefined;
let a: StakedServer, b: StakedServer, c: StakedServer;

beforeAll(async () => {
  net = env.net;
  let file: string;
  ({ a, b, c, deploymentFile: file } = await dashboardScene(net, env.scratch));
  dashboard = new Dashboard(await ChainWatch.connect(net.chain.url, file), { measureIntervalMs: 0, txUrl: "https://explorer.example/tx/" });
}, 120_000);

async function poll(): Promise<Snapshot> {
  await dashboard!.tick();
  return dashboard!.snapshot()!;
}

function serverOf(s: Snapshot, who: StakedServer): ServerView {
  const v = s.models[0]!.servers.find((x) => x.operator === who.running.wallet.address);
  if (v === undefined) throw new Error(`${who.running.wallet.address} is not on the dashboard`);
  return v;
}

describe("dashboard state on a Hardhat chain", () => {
  it("shows the registered variant and its servers with layers, price, stake, trust and θ", async () => {
    const s = await poll();
    const { trust } = net.readers();
    expect([s.chainId, s.block, s.scannedBlock]).toEqual(["31337", await net.provider.getBlockNumber(), await net.provider.getBlockNumber()]);
    expect(s.theta).toBe(0.4);
    expect(s.models.map((m) => ({ id: m.id, name: m.name, numLayers: m.numLayers, retired: m.retired }))).toEqual([
      { id: net.variantId, name: "dashboard-model", numLayers: 4, retired: false },
    ]);
    const rows = s.models[0]!.servers.map((v) => [v.operator, v.endpoint, v.firstLayer, v.lastLayer, v.stakeWei, v.pricePerTokenWei, v.health, v.belowTheta]);
    expect(rows).toEqual(
      [a, b, c].map((x, i) => [x.running.wallet.address, x.running.server.url, i === 0 ? 0 : 2, i === 0 ? 2 : 4, SERVER_STAKE.toString(), "0", "unmeasured", false]),
    );
    for (const x of [a, b, c]) expect(serverOf(s, x).trust).toBeCloseTo(Number(await trust.trustOf(x.running.wallet.address)) / 1e18, 12);
    expect(s.disputes).toEqual([]);
    expect(s.work).toEqual({ batchesPosted: 0, receiptsCommitted: 0, receiptsAudited: 0 });
  });

  it("counts a channel opened and a voucher redeemed, with the fee to the verifiers' pool", async () => {
    await net.increaseTime(DEVNET_PARAMS.timing.probationPeriod + 1n); // servers leave probation: channels may open
    const client = new Wallet(DEV_KEYS[4]!, net.provider);
    const deposit = parseEther("5");
    await net.mint(client.address, deposit);
    await (await EFedToken__factory.connect(net.addresses.token, client).approve(net.addresses.channels, deposit)).wait();
    const channels = PaymentChannels__factory.connect(net.addresses.channels, client);
    const channelId = await channels.nextChannelId(client.address, a.running.wallet.address);
    await (await channels.open(a.running.wallet.address, deposit)).wait();
    const owed = parseEther("2");
    const signature = await signVoucher(client, voucherDomain(31337n, net.addresses.channels), { channelId, cumulativeAmount: owed });
    await (await PaymentChannels__factory.connect(net.addresses.channels, a.signer).redeem(channelId, owed, signature)).wait();

    const s = await poll();
    const fee = (owed * DEVNET_PARAMS.feeBps) / 10_000n;
    expect(s.money).toMatchObject({ channelsOpened: 1, vouchersRedeemed: 1, paidToServersWei: (owed - fee).toString(), feesWei: fee.toString() });
    expect(s.money.rewardPoolWei).toBe((await VerifierRewards__factory.connect(net.addresses.rewards, net.provider).unallocated()).toString());
    expect(s.money.channels).toEqual([
      { id: channelId, client: client.address, server: a.running.wallet.address, depositWei: deposit.toString(), paidWei: owed.toString(), vouchersRedeemed: 1, closed: false },
    ]);
  });

  it("shows batches posted, the dispute of the cheater with its transaction, then the votes, the outcome and the slash", async () => {
    await net.serveAndCommit([a, b]);
    const cheated = await net.serveAndCommit([a, c]);
    await net.mine();
    const { challenger } = await net.crew();
    const round = await challenger.runOnce();
    expect(round.challenged.length).toBe(1);
    const disputeId = round.challenged[0]!;

    let s = await poll();
    expect(s.work.batchesPosted).toBe(4);
    const { commitments } = net.contractsFor(net.admin);
    const batches = await Promise.all([0, 1, 2, 3].map((i) => commitments.batch(i)));
    expect(s.work.receiptsCommitted).toBe(batches.reduce((sum, x) => sum + Number(x.receiptCount), 0));
    const ledger = AuditLedger__factory.connect(net.addresses.auditLedger, net.provider);
    const challengerAddress = new Wallet(DEV_KEYS[0]!).address;
    const passes = await Promise.all([0, 1, 2, 3].map(async (i) => Number((await ledger.passRecord(i, challengerAddress)).count)));
    expect(s.work.receiptsAudited).toBe(passes.reduce((x, y) => x + y, 0));
    expect(serverOf(s, c).batchesPosted).toBe(1);
    expect(serverOf(s, a).batchesPosted).toBe(2);
    const opened = (await net.readers().disputes.queryFilter(net.readers().disputes.filters.DisputeOpened()))[0]!;
    expect(s.disputes).toEqual([
      expect.objectContaining({
        id: Number(disputeId),
        batchId: cheated[1],
        server: c.running.wallet.address,
        challenger: challengerAddress,
        status: "open",
        outcome: "none",
        slashedWei: "0",
        openedTx: opened.transactionHash,
      }),
    ]);
    expect(s.disputes[0]!.settledTx).toBeUndefined();

    await net.runCommittee(disputeId);
    s = await poll();
    const { disputes, trust, staking } = net.readers();
    const settled = (await disputes.queryFilter(disputes.filters.DisputeSettled()))[0]!;
    const slash = DEVNET_PARAMS.disputes.serverSlash;
    const d = s.disputes[0]!;
    expect({ ...d, committee: [...d.committee].sort(), votes: d.votes.length }).toMatchObject({
      status: "settled",
      outcome: "serverAtFault",
      faultVotes: 3,
      correctVotes: 0,
      committee: [...(await disputes.committee(disputeId))].sort(),
      votes: 3,
      slashedWei: slash.toString(),
      toChallengerWei: ((slash * DEVNET_PARAMS.disputes.challengerShareBps) / 10_000n).toString(),
      settledTx: settled.transactionHash,
    });
    expect(d.votes.every((v) => v.serverAtFault)).toBe(true);
    const cheater = serverOf(s, c);
    const cheaterTrust = await trust.trustOf(c.running.wallet.address);
    expect([cheater.slashedWei, cheater.stakeWei, cheater.belowTheta]).toEqual([slash.toString(), (await staking.operator(c.running.wallet.address)).bonded.toString(), true]);
    expect(cheater.trust).toBeCloseTo(Number(cheaterTrust) / 1e18, 12);
    expect([serverOf(s, a).slashedWei, serverOf(s, b).slashedWei]).toEqual(["0", "0"]);
    // every verifier's rewards: what it was allocated minus what it claimed is what the pool owes it
    const rewards = VerifierRewards__factory.connect(net.addresses.rewards, net.provider);
    expect(s.money.rewards.length).toBeGreaterThan(0);
    for (const r of s.money.rewards) expect([r.verifier, BigInt(r.allocatedWei) - BigInt(r.claimedWei)]).toEqual([r.verifier, await rewards.owed(r.verifier)]);
  }, 120_000);

  it("measures the servers itself: up with a step time, down once stopped", async () => {
    await dashboard!.measure();
    let s = await poll();
    expect([a, b, c].map((x) => serverOf(s, x).health)).toEqual(["up", "up", "up"]);
    expect(serverOf(s, a).stepMs).toBeGreaterThan(0);
    await c.running.stop();
    await dashboard!.measure();
    s = await poll();
    expect([a, b, c].map((x) => serverOf(s, x).health)).toEqual(["up", "up", "down"]);
    expect(serverOf(s, c).reason).toMatch(/ECONNREFUSED|connect/);
  });

  it("serves the page, the state, transactions and a live event stream; closing the app ends the stream", async () => {
    const app = Fastify();
    mountDashboard(app, dashboard!, new Map([
      ["index.html", { contentType: "text/html; charset=utf-8", body: Buffer.from("<html>page</html>") }],
      ["assets/app.js", { contentType: "text/javascript; charset=utf-8", body: Buffer.from("ok()") }],
    ]));
    const url = await app.listen({ port: 0, host: "127.0.0.1" });
    try {
      expect(await (await fetch(`${url}/dashboard/`)).text()).toBe("<html>page</html>");
      expect((await fetch(`${url}/dashboard/assets/app.js`)).headers.get("content-type")).toBe("text/javascript; charset=utf-8");
      expect((await fetch(`${url}/dashboard/assets/nothing.js`)).status).toBe(404);
      const state = (await (await fetch(`${url}/dashboard/state`)).json()) as Snapshot;
      expect(state.block).toBe(dashboard!.snapshot()!.block);
      const hash = state.disputes[0]!.openedTx;
      const tx = (await (await fetch(`${url}/dashboard/tx/${hash}`)).json()) as { transaction: { hash: string }; receipt: { status: number } };
      expect([tx.transaction.hash, tx.receipt.status]).toEqual([hash, 1]);
      const bad = await fetch(`${url}/dashboard/tx/0x12`);
      expect([bad.status, ((await bad.json()) as { error: string }).error]).toEqual([400, '"0x12" is not a transaction hash (0x and 64 hex digits)']);
      expect((await fetch(`${url}/dashboard/tx/0x${"ab".repeat(32)}`)).status).toBe(404);

      // the stream: the history and the latest snapshot at once, then each poll's snapshot and sample
      const stream = await fetch(`${url}/dashboard/events`);
      expect(stream.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
      const reader = stream.body!.getReader();
      const events: DashboardEvent[] = [];
      let buffer = "";
      const next = async (count: number): Promise<void> => {
        while (events.length < count) {
          const { value } = await reader.read();
          buffer += Buffer.from(value!).toString();
          let cut: number;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            events.push(JSON.parse(buffer.slice(6, cut)) as DashboardEvent);
            buffer = buffer.slice(cut + 2);
          }
        }
      };
      await next(2);
      expect(events.map((e) => e.type)).toEqual(["history", "snapshot"]);
      expect((events[0] as { samples: unknown[] }).samples.length).toBe(dashboard!.history().length);
      await net.mine();
      await dashboard!.tick();
      await next(4);
      expect(events.map((e) => e.type)).toEqual(["history", "snapshot", "snapshot", "sample"]);
      expect((events[2] as { snapshot: Snapshot }).snapshot.block).toBe(state.block + 1);
    } finally {
      await app.close(); // returns although the event stream is still open
    }
  });
});
