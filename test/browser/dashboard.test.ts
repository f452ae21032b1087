import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { beforeAll, describe, expect, it } from "vitest";
import { ModelDirectory } from "../../engine/model/modelDir.js";
import { TextTokenizer } from "../../engine/model/tokenizer.js";
import { Head } from "../../engine/runtime/head.js";
import { BatchingHead } from "../../client/batchingHead.js";
import { ChatTemplate } from "../../client/chat/template.js";
import { GatewayCounters } from "../../client/dashboard/gatewayCounters.js";
import { attachDashboard } from "../../client/dashboard/open.js";
import { GatewayModel } from "../../client/gateway/models.js";
import { buildGateway } from "../../client/gateway/server.js";
import { RemotePipeline } from "../../client/remotePipeline.js";
import { useVerifierChain, type StakedServer, type VerifierChain } from "../node/verifier/chainHarness.js";
import type { RunningServer } from "../node/support.js";
import { KJV } from "../client/support/shippedModel.js";
import { dashboardScene, serveShippedModel } from "./scene.js";

/**
 * The dashboard in a real browser (Debian's Chromium driven by playwright-core), mounted on a
 * gateway: a chain with two variants (the harness's random model with servers A 0:2, B 2:4 and a
 * cheater C 2:4; the shipped model on two servers the gateway routes over), a verifier crew. The
 * page must list every server, stream a chat answer through the gateway, then show the cheater's
 * dispute settle with a slash, live, without a reload. With EFED_WRITE_DOCS=1 it saves
 * docs/dashboard.png.
 */
const CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const WAIT_MS = 60_000;

let browser: Browser | undefined;
let stopGateway: (() => Promise<void>) | undefined;
const shippedServers: RunningServer[] = [];
const env = useVerifierChain("browser-model", async () => {
  await browser?.close();
  await stopGateway?.();
  await Promise.all(shippedServers.map((s) => s.stop()));
});
let net: VerifierChain;
let url: string;
let a: StakedServer, b: StakedServer, c: StakedServer;

beforeAll(async () => {
  net = env.net;
  let deploymentFile: string;
  ({ a, b, c, deploymentFile } = await dashboardScene(net, env.scratch));
  const kjv = ModelDirectory.open(KJV);
  const { servers } = await serveShippedModel(net, kjv, env.scratch, [[0, 4], [4, 8]]);
  shippedServers.push(...servers);

  // the gateway: the shipped model over its two servers, its receipts counted for the dashboard
  const head = await Head.load(kjv);
  const counters = new GatewayCounters();
  const served = new GatewayModel({
    id: "kjv-llama-6m",
    head: new BatchingHead(head),
    tokenizer: TextTokenizer.load(KJV),
    template: ChatTemplate.forModel(KJV),
    eosTokenIds: kjv.config.eosTokenIds,
    openLayers: async () => {
      const urls = servers.map((s) => s.server.url);
      const route = await RemotePipeline.connect(urls, kjv.config.numLayers, { onReceipt: counters.record });
      return { pipeline: route, servers: urls, close: async () => route.close() };
    },
  });
  const app = buildGateway({ models: [served] });
  await attachDashboard(app, { rpcUrl: net.chain.url, deploymentFile, counters, pollIntervalMs: 300, measureIntervalMs: 5_000 });
  url = await app.listen({ port: 0, host: "127.0.0.1" });
  stopGateway = async () => {
    await app.close();
    await served.close();
    await head.release();
    kjv.close();
  };
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_FLAGS });
}, 180_000);

async function text(page: Page, testid: string): Promise<string[]> {
  return page.getByTestId(testid).allInnerTexts();
}

describe("the dashboard in Chromium", () => {
  it("shows the servers, streams a chat answer, and shows the cheater's slash appear live", async () => {
    const page = await browser!.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(`${url}/dashboard/`);
    await expect.poll(() => page.getByTestId("server-row").count(), { timeout: WAIT_MS }).toBe(5);
    const operators = await page.getByTestId("server-row").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-operator")));
    expect(operators.sort()).toEqual([a, b, c].map((s) => s.running.wallet.address).concat(shippedServers.map((s) => s.wallet.address)).sort());
    expect(await text(page, "live")).toEqual(["live"]);

    // the chat: count the assistant message's text changes while the answer streams in
    await expect.poll(() => page.getByTestId("chat-input").isEnabled(), { timeout: WAIT_MS }).toBe(true);
    // (page code as a string: the test's TypeScript has no DOM types)
    await page.evaluate(`window.textChanges = 0;
      new MutationObserver(() => window.textChanges++).observe(document.querySelector('[data-testid="chat-messages"]'), { subtree: true, characterData: true, childList: true });`);
    await page.getByTestId("chat-input").fill("And God said");
    await page.getByRole("button", { name: "Send" }).click();
    await expect.poll(() => text(page, "chat-user")).toEqual(["And God said"]);
    await expect.poll(() => page.getByRole("button", { name: "Send" }).isEnabled(), { timeout: WAIT_MS }).toBe(true);
    expect(await text(page, "chat-error")).toEqual([]);
    const [reply] = await text(page, "chat-assistant");
    expect(reply!.length).toBeGreaterThan(0);
    expect(await page.evaluate("window.textChanges")).toBeGreaterThan(2); // more than the message's creation: it grew
    await expect.poll(() => text(page, "stat-sessions"), { timeout: WAIT_MS }).toEqual(["1\nsessions (gateway)"]);

    // the cheater: served, committed, challenged, voted at fault and slashed while the page is open
    expect(await text(page, "dispute-row")).toEqual([]);
    await net.serveAndCommit([a, b]);
    await net.serveAndCommit([a, c]);
    await net.mine();
    const { challenger } = await net.crew();
    const [disputeId] = (await challenger.runOnce()).challenged;
    await expect.poll(() => page.getByTestId("dispute-row").count(), { timeout: WAIT_MS }).toBe(1);
    await net.runCommittee(disputeId!);
    await expect.poll(() => text(page, "dispute-outcome"), { timeout: WAIT_MS }).toEqual(["server at fault"]);
    expect(await text(page, "dispute-slashed")).toEqual(["1,000 EFED"]);
    const cheaterRow = page.locator(`[data-testid="server-row"][data-operator="${c.running.wallet.address}"]`);
    expect(await cheaterRow.getByTestId("server-slashed").innerText()).toBe("1,000 EFED");
    expect(await cheaterRow.getAttribute("class")).toBe("row-warn"); // trust below θ
    await expect.poll(() => text(page, "stat-batches")).toEqual(["4\nbatches posted"]);

    if (process.env.EFED_WRITE_DOCS === "1") {
      const docs = join(import.meta.dirname, "..", "..", "docs");
      mkdirSync(docs, { recursive: true });
      await page.screenshot({ path: join(docs, "dashboard.png"), fullPage: true });
    }
    await page.close();
  }, 240_000);
});

