import { describe, expect, it } from "vitest";
import { BanList } from "../../client/failoverBans.js";
import { failedServerUrl } from "../../client/failoverErrors.js";
import { readRegisteredServers, screenServers, type RegisteredServer, type ServerInfoRow } from "../../client/route/discovery.js";
import { layerRanges, planRoute, type Candidate } from "../../client/route/plan.js";
import { ReceiptError, RouteError, StepTimeoutError } from "../../client/routeError.js";
import { ShardRequestError } from "../../client/shardClient.js";

function server(url: string, first: number, last: number, stepMs = 10, price = 0n, trust = 1): Candidate {
  return { url, firstLayer: first, lastLayer: last, pricePerToken: price, trust, rttMs: 1, stepMs };
}
const urls = (r: { servers: Candidate[] }): string[] => r.servers.map((s) => s.url);

describe("planRoute", () => {
  it("chains whole ranges that overlap, entering each server at its first layer", () => {
    // b (2:6) overlaps a (0:4) and c (4:8); only a→c and b-less chains fit, since b cannot be entered at 4
    const route = planRoute([server("a", 0, 4), server("b", 2, 6), server("c", 4, 8), server("d", 6, 8)], { numLayers: 8 });
    expect(urls(route)).toEqual(["a", "c"]);
    expect(route.timeMsPerToken).toBe(20);
  });

  it("prefers fewer, faster steps with latency, the cheaper chain with price", () => {
    const candidates = [server("whole", 0, 8, 12, 50n), server("lo", 0, 4, 10, 10n), server("hi", 4, 8, 10, 10n)];
    expect(urls(planRoute(candidates, { numLayers: 8, prefer: "latency" }))).toEqual(["whole"]);
    const cheap = planRoute(candidates, { numLayers: 8, prefer: "price" });
    expect(urls(cheap)).toEqual(["lo", "hi"]);
    expect(cheap.pricePerToken).toBe(20n);
  });

  it("keeps the route within --max-price, even when that makes it slower", () => {
    const candidates = [server("fast", 0, 8, 5, 100n), server("slow", 0, 8, 50, 30n)];
    expect(urls(planRoute(candidates, { numLayers: 8 }))).toEqual(["fast"]);
    expect(urls(planRoute(candidates, { numLayers: 8, maxRoutePricePerToken: 30n }))).toEqual(["slow"]);
    expect(() => planRoute(candidates, { numLayers: 8, maxRoutePricePerToken: 29n })).toThrow(
      "no route of whole server ranges covers the model's 8 layers within the price limit of 29 per token",
    );
  });

  it("weighs trust: a less trusted server costs more", () => {
    const candidates = [server("trusted", 0, 8, 10, 0n, 1), server("doubtful", 0, 8, 8, 0n, 0.5)];
    // median step 10 ms: doubtful costs 8/10 × (1 + 0.5) = 1.2, trusted 10/10 × 1 = 1
    expect(urls(planRoute(candidates, { numLayers: 8 }))).toEqual(["trusted"]);
    expect(urls(planRoute(candidates, { numLayers: 8, trustWeight: 0 }))).toEqual(["doubtful"]);
  });

  it("names the layers no server covers", () => {
    const err = (() => {
      try {
        planRoute([server("a", 0, 3), server("b", 5, 6)], { numLayers: 8 });
      } catch (e) {
        return e as RouteError;
      }
      throw new Error("planned");
    })();
    expect(err).toBeInstanceOf(RouteError);
    expect(err.message).toBe("no route covers the model's 8 layers: no usable server serves layer(s) 3–4, 6–7");
    expect(err.details).toEqual({ uncoveredLayers: [3, 4, 6, 7], candidates: 2 });
    expect(() => planRoute([], { numLayers: 2 })).toThrow("no usable server serves layer(s) 0–1");
  });

  it("says when every layer is served but no chain of whole ranges fits", () => {
    expect(() => planRoute([server("a", 0, 4), server("b", 2, 8)], { numLayers: 8 })).toThrow(
      "every layer is served, but no chain of whole server ranges goes from layer 0 to 8",
    );
  });

  it("halves the cost of servers it is told to keep (a repaired route moves as little as it can)", () => {
    const candidates = [server("old", 0, 8, 12), server("new", 0, 8, 10)];
    expect(urls(planRoute(candidates, { numLayers: 8 }))).toEqual(["new"]);
    expect(urls(planRoute(candidates, { numLayers: 8, keep: new Set(["old"]) }))).toEqual(["old"]);
  });

  it("formats layer lists as ranges", () => {
    expect(layerRanges([0, 1, 2, 5, 7, 8])).toBe("0–2, 5, 7–8");
  });
});

function registered(o: Partial<RegisteredServer>): RegisteredServer {
  return {
    operator: "0x" + "11".repeat(20),
    firstLayer: 0,
    lastLayer: 8,
    pricePerToken: 0n,
    stake: 0n,
    trustWad: 5n * 10n ** 17n,
    collateralized: true,
    eligible: true,
    endpoint: "ws://127.0.0.1:1",
    ...o,
  };
}

describe("screening the chain's servers", () => {
  it("drops servers below θ or --min-trust, not collateralized, not eligible, over --max-price, naming why", () => {
    const list = [
      registered({ endpoint: "ws://ok" }),
      registered({ endpoint: "ws://low", trustWad: 3n * 10n ** 17n }),
      registered({ endpoint: "ws://bare", collateralized: false }),
      registered({ endpoint: "ws://new", eligible: false }),
      registered({ endpoint: "ws://dear", pricePerToken: 11n }),
    ];
    const s = screenServers(list, { thetaWad: 4n * 10n ** 17n, maxPricePerToken: 10n });
    expect(s.kept.map((k) => k.endpoint)).toEqual(["ws://ok"]);
    expect(s.dropped.map((d) => [d.server.endpoint, d.reason])).toEqual([
      ["ws://low", "trust 0.300 below θ 0.400"],
      ["ws://bare", "not collateralized (free stake below the minimum for its range)"],
      ["ws://new", "not eligible (not serving, in probation, or its variant retired)"],
      ["ws://dear", "price 11 per token over --max-price 10"],
    ]);
    const strict = screenServers(list.slice(0, 1), { thetaWad: 4n * 10n ** 17n, minTrustWad: 6n * 10n ** 17n });
    expect(strict.dropped.map((d) => d.reason)).toEqual(["trust 0.500 below --min-trust 0.600"]);
  });

  it("reads the registry page by page until a short page, and at most maxServers", async () => {
    const rows: ServerInfoRow[] = Array.from({ length: 5 }, (_, i) => ({
      operator: "0x" + String(i).repeat(40),
      firstLayer: 0n,
      lastLayer: 8n,
      pricePerToken: BigInt(i),
      stake: 0n,
      trust: 0n,
      collateralized: true,
      eligible: true,
      endpoint: `ws://s${i}`,
    }));
    const calls: [number, number][] = [];
    const registry = { servers: async (_v: string, offset: number, limit: number) => (calls.push([offset, limit]), rows.slice(offset, offset + limit)) };
    expect((await readRegisteredServers(registry, "0x01", { pageSize: 2 })).map((s) => s.endpoint)).toEqual(rows.map((r) => r.endpoint));
    expect(calls).toEqual([
      [0, 2],
      [2, 2],
      [4, 2],
    ]);
    calls.length = 0;
    expect((await readRegisteredServers(registry, "0x01", { pageSize: 2, maxServers: 3 })).length).toBe(3);
    expect(calls).toEqual([
      [0, 2],
      [2, 1],
    ]);
    await expect(readRegisteredServers(registry, "0x01", { pageSize: 0 })).rejects.toThrow("discovery option pageSize must be a positive integer, got 0");
  });
});

describe("bans and blame", () => {
  it("bans a server for longer each time it fails again, up to the maximum", () => {
    let now = 0;
    const bans = new BanList({ firstBanMs: 1_000, maxBanMs: 3_000, now: () => now });
    expect(bans.ban("ws://a")).toBe(1_000);
    expect(bans.isBanned("ws://a")).toBe(true);
    now = 1_000;
    expect(bans.isBanned("ws://a")).toBe(false);
    expect(bans.ban("ws://a")).toBe(2_000);
    expect(bans.ban("ws://a")).toBe(3_000);
    expect([...bans.banned()]).toEqual(["ws://a"]);
    expect(() => new BanList({ firstBanMs: 0 })).toThrow("ban option firstBanMs must be a positive integer, got 0");
  });

  it("pins a failure on the server it names, and on no one otherwise", () => {
    expect(failedServerUrl(new StepTimeoutError("ws://a", 0, 2, "x", 1))).toBe("ws://a");
    expect(failedServerUrl(new ReceiptError("bad", "ws://b", 3n))).toBe("ws://b");
    expect(failedServerUrl(new ShardRequestError("CLOSED", "closed", { url: "ws://c" }))).toBe("ws://c");
    expect(failedServerUrl(new RouteError("layers", { url: "ws://d" }))).toBe("ws://d");
    expect(failedServerUrl(new RouteError("the route ends at layer 4"))).toBeUndefined();
    expect(failedServerUrl(new Error("?"))).toBeUndefined();
  });
});
