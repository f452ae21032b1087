import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { Wallet, hexlify, randomBytes } from "ethers";
import { afterAll, describe, expect, it } from "vitest";
import { voucherDomain } from "../../protocol/eip712.js";
import { recoverVoucherSigner } from "../../protocol/voucher.js";
import { Ledger } from "../../client/wallet/ledger.js";
import { keystoreAddress, openKeystore, writeKeystore } from "../../client/wallet/keystore.js";
import { scratchDir } from "../engine/helpers.js";

const scratch = scratchDir();
afterAll(() => scratch.cleanup());
const domain = voucherDomain(31337n, "0x" + "cc".repeat(20));

describe("keystore", () => {
  it("encrypts a key, opens it with its password, and names the file on a wrong password or a missing one", async () => {
    const path = join(scratch.dir, "w.json");
    const key = Wallet.createRandom();
    await writeKeystore(path, new Wallet(key.privateKey), "correct horse", 1024);
    expect(keystoreAddress(path)).toBe(key.address);
    expect((await openKeystore(path, "correct horse")).privateKey).toBe(key.privateKey);
    await expect(openKeystore(path, "wrong")).rejects.toMatchObject({ code: "WALLET_BAD_PASSWORD", message: `wrong password for the keystore ${path}` });
    await expect(writeKeystore(path, new Wallet(Wallet.createRandom().privateKey), "x", 1024)).rejects.toMatchObject({ code: "WALLET_EXISTS" });
    const missing = join(scratch.dir, "none.json");
    await expect(openKeystore(missing, "x")).rejects.toMatchObject({
      code: "WALLET_MISSING",
      message: `no keystore at ${missing}: create one with \`efed wallet create --wallet ${missing}\``,
    });
  });
});

describe("ledger", () => {
  const channelId = hexlify(randomBytes(32));
  const key = Wallet.createRandom();
  const server = Wallet.createRandom().address;

  it("signs a step's vouchers to several channels in one transaction, all or none", () => {
    const ledger = Ledger.open(join(scratch.dir, "many.sqlite"));
    const [c1, c2] = [hexlify(randomBytes(32)), hexlify(randomBytes(32))];
    const other = Wallet.createRandom().address;
    ledger.addChannel({ channelId: c1, chainId: 31337n, contract: domain.verifyingContract!, server, deposit: 100n });
    ledger.addChannel({ channelId: c2, chainId: 31337n, contract: domain.verifyingContract!, server: other, deposit: 40n });
    const day = { day: "2026-12-01", maxPerDayWei: 100n };
    const [v1, v2] = ledger.signNextAll([{ channelId: c1, amount: 30n }, { channelId: c2, amount: 20n }], key.signingKey, domain, day);
    expect([v1!.cumulativeAmount, v2!.cumulativeAmount, ledger.spentOn("2026-12-01")]).toEqual([30n, 20n, 50n]);
    expect(recoverVoucherSigner(domain, { channelId: c2, cumulativeAmount: 20n }, v2!.signature)).toBe(key.address);
    // c2 has 20 left: nothing is signed, c1's voucher included
    expect(() => ledger.signNextAll([{ channelId: c1, amount: 10n }, { channelId: c2, amount: 21n }], key.signingKey, domain, day)).toThrow(
      `channel ${c2} to ${other} has 20 left of its deposit 40, 21 is owed: top it up`,
    );
    // the day's limit counts the sum: 50 spent + 30 + 20 + 10 > 105
    expect(() => ledger.signNextAll([{ channelId: c1, amount: 30n }, { channelId: c2, amount: 20n }, { channelId: c1, amount: 10n }], key.signingKey, domain, { day: "2026-12-01", maxPerDayWei: 105n })).toThrow(
      "paying 10 would bring 2026-12-01's spending to 110, over the daily limit of 105",
    );
    expect([ledger.get(c1)!.cumulative, ledger.get(c2)!.cumulative, ledger.spentOn("2026-12-01")]).toEqual([30n, 20n, 50n]);
    ledger.close();
  });

  it("signs cumulative vouchers within the deposit and the day's limit, and keeps them across a reopen", () => {
    const path = join(scratch.dir, "a.sqlite");
    const ledger = Ledger.open(path);
    ledger.addChannel({ channelId, chainId: 31337n, contract: domain.verifyingContract!, server, deposit: 100n });
    const v1 = ledger.signNext(channelId, 30n, key.signingKey, domain, { day: "2026-12-01" });
    const v2 = ledger.signNext(channelId, 20n, key.signingKey, domain, { day: "2026-12-01", maxPerDayWei: 50n });
    expect([v1.cumulativeAmount, v2.cumulativeAmount]).toEqual([30n, 50n]);
    expect(recoverVoucherSigner(domain, { channelId, cumulativeAmount: 50n }, v2.signature)).toBe(key.address);
    expect(() => ledger.signNext(channelId, 1n, key.signingKey, domain, { day: "2026-12-01", maxPerDayWei: 50n })).toThrow(
      "paying 1 would bring 2026-12-01's spending to 51, over the daily limit of 50",
    );
    expect(() => ledger.signNext(channelId, 51n, key.signingKey, domain, { day: "2026-12-02" })).toThrow(
      `channel ${channelId} to ${server} has 50 left of its deposit 100, 51 is owed: top it up`,
    );
    ledger.close();
    const again = Ledger.open(path);
    expect(again.get(channelId)).toMatchObject({ cumulative: 50n, signature: v2.signature, state: "open" });
    expect(again.spentOn("2026-12-01")).toBe(50n);
    expect(again.findOpen(31337n, domain.verifyingContract!, server, 50n)?.channelId).toBe(channelId);
    expect(again.findOpen(31337n, domain.verifyingContract!, server, 51n)).toBeUndefined();
    again.close();
  });

  it("never signs two vouchers for one cumulative amount from two handles on one wallet", () => {
    const path = join(scratch.dir, "b.sqlite");
    const a = Ledger.open(path);
    const b = Ledger.open(path);
    a.addChannel({ channelId, chainId: 31337n, contract: domain.verifyingContract!, server, deposit: 1000n });
    const amounts: bigint[] = [];
    for (let i = 0; i < 20; i++) amounts.push((i % 2 === 0 ? a : b).signNext(channelId, 10n, key.signingKey, domain, { day: "d" }).cumulativeAmount);
    expect(amounts).toEqual(Array.from({ length: 20 }, (_, i) => BigInt(10 * (i + 1))));
    a.close();
    b.close();
  });

  it("two processes signing on one channel at once take turns: every cumulative amount is signed once", async () => {
    const path = join(scratch.dir, "c.sqlite");
    const ledger = Ledger.open(path);
    ledger.addChannel({ channelId, chainId: 31337n, contract: domain.verifyingContract!, server, deposit: 10_000n });
    const signer = new URL("./support/ledgerSigner.ts", import.meta.url).pathname;
    const run = (): Promise<bigint[]> =>
      promisify(execFile)(process.execPath, ["--import", "tsx", signer, path, channelId, key.privateKey, "40"]).then(({ stdout }) =>
        (JSON.parse(stdout) as string[]).map(BigInt),
      );
    const [one, two] = await Promise.all([run(), run()]);
    const all = [...one!, ...two!].sort((x, y) => (x < y ? -1 : 1));
    expect(all).toEqual(Array.from({ length: 80 }, (_, i) => BigInt(10 * (i + 1))));
    expect(ledger.get(channelId)!.cumulative).toBe(800n);
    ledger.close();
  }, 60_000);
});
