import { formatEther } from "ethers";
import { Ledger } from "../../client/wallet/ledger.js";

/** What the demo generation showed: the answer, who served it, what it cost, the receipts the wallet holds for it. */
export interface DemoResult {
  prompt: string;
  answer: string;
  /** The route's servers, as the gateway names them (x-efed-servers). */
  servers: string[];
  /** What the vouchers signed for it add up to, e.g. "0.032 EFED". */
  cost: string;
  /** Per server address: the receipts signed for it (steps, tokens) and the vouchers signed in return (token base units). */
  paid: Map<string, { steps: number; tokens: number; vouchersWei: bigint }>;
  elapsedMs: number;
}

export const DEMO_PROMPT = "In the beginning";
const DEMO_TOKENS = 24;
const DEMO_TIMEOUT_MS = 60_000;

/**
 * One chat completion through the gateway, paid by the devnet's wallet and checked by the client
 * (each step's receipt is verified before its voucher is signed); then what the wallet's ledger
 * gained meanwhile: the receipts (the evidence it paid for) and the vouchers (what it paid). Nothing
 * else uses the wallet while the devnet starts, so the difference is this generation's.
 */
export async function runDemo(gatewayUrl: string, modelId: string, ledgerPath: string, chainId: bigint, channels: string): Promise<DemoResult> {
  const before = ledgerTotals(ledgerPath, chainId, channels);
  const started = performance.now();
  const res = await fetch(`${gatewayUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: modelId, messages: [{ role: "user", content: DEMO_PROMPT }], max_tokens: DEMO_TOKENS, temperature: 0 }),
    signal: AbortSignal.timeout(DEMO_TIMEOUT_MS),
  });
  const body = (await res.json()) as { choices?: { message?: { content?: string } }[]; error?: { message?: string } };
  if (!res.ok) throw new Error(`the demo request got HTTP ${res.status} from the gateway: ${body.error?.message ?? JSON.stringify(body)}`);
  const elapsedMs = performance.now() - started;
  const after = ledgerTotals(ledgerPath, chainId, channels);
  const paid = new Map<string, { steps: number; tokens: number; vouchersWei: bigint }>();
  let total = 0n;
  for (const [server, a] of after) {
    const b = before.get(server) ?? { steps: 0, tokens: 0, vouchersWei: 0n };
    const gained = { steps: a.steps - b.steps, tokens: a.tokens - b.tokens, vouchersWei: a.vouchersWei - b.vouchersWei };
    if (gained.steps === 0 && gained.vouchersWei === 0n) continue;
    paid.set(server, gained);
    total += gained.vouchersWei;
  }
  return {
    prompt: DEMO_PROMPT,
    answer: body.choices?.[0]?.message?.content ?? "",
    servers: splitHeader(res.headers.get("x-efed-servers")),
    cost: `${formatEther(total)} EFED`,
    paid,
    elapsedMs,
  };
}

function splitHeader(value: string | null): string[] {
  return value === null || value === "" ? [] : value.split(",").map((s) => s.trim());
}

/** Per server, from the wallet's ledger: receipts held (steps, tokens) and the vouchers' cumulative amount on its channels. */
function ledgerTotals(path: string, chainId: bigint, channels: string): Map<string, { steps: number; tokens: number; vouchersWei: bigint }> {
  const ledger = Ledger.open(path);
  try {
    const totals = new Map<string, { steps: number; tokens: number; vouchersWei: bigint }>();
    for (const [server, r] of ledger.receiptTotals()) totals.set(server, { ...r, vouchersWei: 0n });
    for (const c of ledger.list(chainId, channels)) {
      const t = totals.get(c.server) ?? { steps: 0, tokens: 0, vouchersWei: 0n };
      totals.set(c.server, { ...t, vouchersWei: t.vouchersWei + c.cumulative });
    }
    return totals;
  } finally {
    ledger.close();
  }
}
