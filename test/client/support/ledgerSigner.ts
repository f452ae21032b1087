// Signs N vouchers of 10 on one channel of a ledger and prints their cumulative amounts (a second process sharing a wallet).
import { Wallet } from "ethers";
import { voucherDomain } from "../../../protocol/eip712.js";
import { Ledger } from "../../../client/wallet/ledger.js";

const [path, channelId, key, n] = process.argv.slice(2) as [string, string, string, string];
const ledger = Ledger.open(path);
const domain = voucherDomain(31337n, "0x" + "cc".repeat(20));
const amounts: string[] = [];
for (let i = 0; i < Number(n); i++) amounts.push(ledger.signNext(channelId, 10n, new Wallet(key).signingKey, domain, { day: "d" }).cumulativeAmount.toString());
ledger.close();
console.log(JSON.stringify(amounts));
