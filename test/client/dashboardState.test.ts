import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ChainLog, type ChainEvent } from "../../client/dashboard/chainLog.js";
import { variantName } from "../../client/dashboard/chainWatch.js";
import { readDashboardDeployment } from "../../client/dashboard/deployment.js";
import { GatewayCounters } from "../../client/dashboard/gatewayCounters.js";
import { loadDashboardAssets } from "../../client/dashboard/webAssets.js";
import type { Receipt } from "../../protocol/receipt.js";
import { scratchDir } from "../engine/helpers.js";

/** The dashboard's pieces that need no chain: the event fold's bounds, the gateway counters, the deployment file. */
const scratch = scratchDir();
afterAll(() => scratch.cleanup());

const SERVER = "0x00000000000000000000000000000000000000Aa";
const event = (name: string, args: Record<string, unknown>, block = 1): ChainEvent => ({ name, args, block, txHash: `0x${name.length.toString(16).padStart(64, "0")}` });
const opened = (id: number): ChainEvent =>
  event("DisputeOpened", { disputeId: BigInt(id), batchId: 7n, server: SERVER, challenger: "0xC", serverLocked: 5n });

describe("ChainLog", () => {
  it("keeps only the newest maxDisputes disputes and maxChannels channels, newest first, while totals count every one", () => {
    const log = new ChainLog({ maxDisputes: 2, maxChannels: 1 });
    for (const id of [1, 2, 3]) log.apply(opened(id));
    log.apply(event("DisputeSettled", { disputeId: 1n, outcome: 1n, slashed: 9n, toChallenger: 4n, faultVotes: 1, correctVotes: 0 })); // pruned: ignored
    log.apply(event("DisputeSettled", { disputeId: 3n, outcome: 3n, slashed: 0n, toChallenger: 0n, faultVotes: 1, correctVotes: 1 }));
    expect(log.disputeViews().map((d) => [d.id, d.status, d.outcome, d.faultVotes, d.correctVotes])).toEqual([
      [3, "settled", "noQuorum", 1, 1],
      [2, "open", "none", 0, 0],
    ]);
    for (const id of ["0x01", "0x02"]) log.apply(event("ChannelOpened", { channelId: id, client: "0xA", server: SERVER, deposit: 10n }));
    log.apply(event("VoucherRedeemed", { channelId: "0x01", cumulativeAmount: 4n, paidToServer: 3n, fee: 1n })); // pruned channel
    log.apply(event("VoucherRedeemed", { channelId: "0x02", cumulativeAmount: 2n, paidToServer: 2n, fee: 0n }));
    expect(log.channelViews()).toEqual([{ id: "0x02", client: "0xA", server: SERVER, depositWei: "10", paidWei: "2", vouchersRedeemed: 1, closed: false }]);
    expect(log.totals).toMatchObject({ channelsOpened: 2, vouchersRedeemed: 2, paidToServers: 5n, fees: 1n });
  });

  it("adds up batches, audited receipts and slashes per server whatever the address case", () => {
    const log = new ChainLog();
    log.apply(event("BatchPosted", { server: SERVER, receiptCount: 8n }));
    log.apply(event("BatchPosted", { server: SERVER.toLowerCase(), receiptCount: 3n }));
    log.apply(event("PassesRecorded", { batchId: 0n, verifier: "0xV", server: SERVER, leaves: ["0x1", "0x2"], credited: 2n, reward: 6n }));
    log.apply(event("Slashed", { operator: SERVER, lockId: "0x0", amount: 70n, beneficiary: "0xB" }));
    log.apply(event("RewardAllocated", { verifier: "0xV", amount: 6n }));
    log.apply(event("RewardClaimed", { verifier: "0xV", amount: 5n }));
    expect(log.serverTally(SERVER.toUpperCase().replace("0X", "0x"))).toEqual({ batchesPosted: 2, receiptsCommitted: 11, receiptsAudited: 2, slashedWei: 70n });
    expect(log.rewardViews()).toEqual([{ verifier: "0xV", allocatedWei: "6", claimedWei: "5", passesRecorded: 2 }]);
    expect(log.serverTally("0x0000000000000000000000000000000000000001")).toEqual({ batchesPosted: 0, receiptsCommitted: 0, receiptsAudited: 0, slashedWei: 0n });
  });
});

describe("GatewayCounters", () => {
  it("counts each verified receipt's tokens for its server and a sequence per first step of the first hop", () => {
    const counters = new GatewayCounters();
    const receipt = (server: string, step: bigint, firstLayer: number, tokens: number): Receipt => ({
      sessionId: "0x" + "11".repeat(32), step, firstLayer, lastLayer: firstLayer + 2, variantId: "0x" + "22".repeat(32), inputHash: "0x" + "33".repeat(32), outputHash: "0x" + "44".repeat(32), tokens, server,
    });
    for (const r of [receipt(SERVER, 0n, 0, 5), receipt("0xBB", 0n, 2, 5), receipt(SERVER, 1n, 0, 1), receipt("0xBB", 1n, 2, 1), receipt(SERVER, 0n, 0, 3)]) {
      counters.record({ receipt: r, chain: { sessionId: r.sessionId, server: r.server, lastStep: r.step, head: "0x" + "55".repeat(32), signature: "0x" } });
    }
    expect([...counters.tokens()]).toEqual([[SERVER.toLowerCase(), 9], ["0xbb", 6]]);
    expect([counters.sessions, counters.totalTokens]).toEqual([2, 15]);
  });
});

describe("deployment file and names", () => {
  it("names a missing file, another chain, and a contract that is not an address", () => {
    const file = join(scratch.dir, "d.json");
    expect(() => readDashboardDeployment(file, 31337n)).toThrow(`no deployment file ${file}: run npm run deploy, or pass --deployment FILE`);
    writeFileSync(file, JSON.stringify({ chainId: "1", contracts: {} }));
    expect(() => readDashboardDeployment(file, 31337n)).toThrow(`${file} is for chain 1, the RPC endpoint is chain 31337`);
    writeFileSync(file, JSON.stringify({ chainId: "31337", contracts: { registry: "nope" } }));
    expect(() => readDashboardDeployment(file, 31337n)).toThrow(`${file}: contracts.registry must be an address, got nope`);
  });

  it("names a variant by the last part of its manifest URI, else by its id", () => {
    expect([variantName("file://kjv-llama-6m", "0xabc"), variantName("https://x.org/models/tiny/", "0xabc"), variantName("", "0x1234567890ab")]).toEqual([
      "kjv-llama-6m",
      "tiny",
      "0x12345678",
    ]);
  });
});

describe("the page", () => {
  it("is built with vite when its directory has no index.html, and every file is served with its type", async () => {
    const dist = join(scratch.dir, "dist");
    const assets = await loadDashboardAssets(dist);
    const index = assets.get("index.html")!.body.toString();
    const script = /src="\.\/(assets\/index-[\w-]+\.js)"/.exec(index)?.[1];
    const style = /href="\.\/(assets\/index-[\w-]+\.css)"/.exec(index)?.[1];
    expect([assets.get(script!)?.contentType, assets.get(style!)?.contentType]).toEqual(["text/javascript; charset=utf-8", "text/css; charset=utf-8"]);
    expect([...assets.keys()].sort()).toEqual([script, style, "index.html"].sort());
  }, 60_000);
});
