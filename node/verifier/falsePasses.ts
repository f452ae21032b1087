import type { Logger } from "pino";
import type { AuditLedger } from "../../types/ethers-contracts/index.js";
import { chainCall } from "./chainErrors.js";

/** The settled dispute whose receipt was found at fault. */
export interface FaultyReceipt {
  disputeId: bigint;
  batchId: bigint;
  leaf: string;
  /** The block in which the batch was posted: passes of it are recorded after it. */
  postedBlock: bigint;
}

/**
 * Slashes every verifier that recorded a pass of a receipt a dispute found at fault
 * (AuditLedger.slashFalsePass: the challenger gets its share of each penalty). Reads the
 * PassesRecorded events of the batch in ranges of `maxBlocksPerQuery`; passes already slashed are
 * skipped, so a retry after a failure does not repeat one. Returns how many passes it slashed.
 */
export async function slashFalsePasses(
  ledger: AuditLedger,
  receipt: FaultyReceipt,
  latestBlock: number,
  maxBlocksPerQuery: number,
  logger: Logger,
): Promise<number> {
  let slashed = 0;
  const leaf = receipt.leaf.toLowerCase();
  for (let from = Number(receipt.postedBlock); from <= latestBlock; from += maxBlocksPerQuery) {
    const to = Math.min(latestBlock, from + maxBlocksPerQuery - 1);
    for (const e of await ledger.queryFilter(ledger.filters.PassesRecorded(receipt.batchId), from, to)) {
      const leaves = [...e.args.leaves];
      const index = leaves.findIndex((l) => l.toLowerCase() === leaf);
      if (index < 0 || (await ledger.falsePassSlashed(e.args.verifier, receipt.leaf))) continue;
      await chainCall("slashing a false pass", async () => (await ledger.slashFalsePass(receipt.batchId, e.args.verifier, leaves, index)).wait());
      slashed++;
      logger.warn({ disputeId: receipt.disputeId.toString(), verifier: e.args.verifier, leaf }, "slashed a recorded pass the dispute showed false");
    }
  }
  return slashed;
}
