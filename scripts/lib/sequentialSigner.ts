import { AbstractSigner, type Provider, type Signer, type TransactionRequest, type TransactionResponse, type TypedDataDomain, type TypedDataField } from "ethers";

/**
 * A signer that sends one transaction at a time: each gets an explicit nonce (the larger of the
 * chain's pending count and one past the last nonce used here) and is mined before sendTransaction
 * returns. Nodes that do not count pending transactions, mine on an interval, or sit behind a load
 * balancer otherwise answer the second transaction of a deploy with "nonce too low".
 */
export class SequentialSigner extends AbstractSigner {
  #nextNonce: number | undefined;

  /** `receiptTimeoutMs`: how long to wait for each transaction to be mined before failing (default 10 minutes). */
  constructor(
    private readonly inner: Signer,
    private readonly receiptTimeoutMs = 600_000,
  ) {
    super(inner.provider);
  }

  getAddress(): Promise<string> {
    return this.inner.getAddress();
  }

  connect(provider: Provider | null): SequentialSigner {
    return new SequentialSigner(this.inner.connect(provider), this.receiptTimeoutMs);
  }

  signTransaction(tx: TransactionRequest): Promise<string> {
    return this.inner.signTransaction(tx);
  }

  signMessage(message: string | Uint8Array): Promise<string> {
    return this.inner.signMessage(message);
  }

  signTypedData(domain: TypedDataDomain, types: Record<string, TypedDataField[]>, value: Record<string, unknown>): Promise<string> {
    return this.inner.signTypedData(domain, types, value);
  }

  override async sendTransaction(tx: TransactionRequest): Promise<TransactionResponse> {
    const onChain = await this.inner.getNonce("pending");
    const nonce = this.#nextNonce === undefined ? onChain : Math.max(onChain, this.#nextNonce);
    const sent = await this.inner.sendTransaction({ ...tx, nonce });
    this.#nextNonce = nonce + 1;
    const receipt = await sent.wait(1, this.receiptTimeoutMs);
    if (receipt === null) throw new Error(`transaction ${sent.hash} (nonce ${nonce}) was not mined`);
    return sent;
  }
}
