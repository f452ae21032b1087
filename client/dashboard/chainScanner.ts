import type { Interface, Provider } from "ethers";
import type { ChainEvent } from "./chainLog.js";

export interface ScanOptions {
  /** Blocks asked of the node per eth_getLogs call (default 2,000: public nodes cap ranges). */
  maxBlockRange?: number;
  /** eth_getLogs calls per `scan` at most (default 10): a long history is caught up over several polls. */
  maxRangesPerScan?: number;
}

/**
 * Reads the events of a set of contracts in block order, range by bounded range, each block once:
 * `scan` goes from where the last one stopped towards the head and returns the decoded events.
 * Logs of the contracts that no interface decodes are skipped.
 */
export class ChainScanner {
  private readonly byAddress: Map<string, Interface>;
  private readonly maxBlockRange: number;
  private readonly maxRangesPerScan: number;

  constructor(
    private readonly provider: Provider,
    contracts: readonly { address: string; iface: Interface }[],
    /** First block not read yet. */
    public nextBlock: number,
    o: ScanOptions = {},
  ) {
    this.byAddress = new Map(contracts.map((c) => [c.address.toLowerCase(), c.iface]));
    this.maxBlockRange = o.maxBlockRange ?? 2_000;
    this.maxRangesPerScan = o.maxRangesPerScan ?? 10;
    for (const [name, v] of [["maxBlockRange", this.maxBlockRange], ["maxRangesPerScan", this.maxRangesPerScan]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`scan option ${name} must be a positive integer, got ${v}`);
    }
  }

  /** The events from `nextBlock` up to `head` (or as far as maxRangesPerScan ranges reach), in chain order. */
  async scan(head: number): Promise<ChainEvent[]> {
    const events: ChainEvent[] = [];
    for (let i = 0; i < this.maxRangesPerScan && this.nextBlock <= head; i++) {
      const toBlock = Math.min(head, this.nextBlock + this.maxBlockRange - 1);
      const logs = await this.provider.getLogs({ address: [...this.byAddress.keys()], fromBlock: this.nextBlock, toBlock });
      logs.sort((x, y) => x.blockNumber - y.blockNumber || x.index - y.index);
      for (const log of logs) {
        const parsed = this.byAddress.get(log.address.toLowerCase())?.parseLog(log);
        if (parsed === null || parsed === undefined) continue;
        const args: Record<string, unknown> = {};
        parsed.fragment.inputs.forEach((input, k) => (args[input.name] = parsed.args[k]));
        events.push({ name: parsed.name, args, block: log.blockNumber, txHash: log.transactionHash });
      }
      this.nextBlock = toBlock + 1;
    }
    return events;
  }
}
