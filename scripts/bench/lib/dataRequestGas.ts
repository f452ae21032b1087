/**
 * Gas of withheld data on chain (contracts/DataRequests.sol), for `npm run bench:gas`: what a server
 * pays to post one step's input and output activations when a verifier requests them on chain, for
 * the shipped model's hidden size and for 4096, one decode token and 64- and 512-token prefills, in
 * fp32 and fp16. The data are real encodings (protocol/activations.ts) of deterministic
 * pseudo-random values (no zero bytes to speak of, like real activations), committed under real
 * receipts; every answer is checked on chain against the receipt's hashes, as in production.
 *
 * Measured on its own in-process network with Prague pricing and an unbounded block gas limit, so
 * that the steps too large for a real block can be measured too: Osaka (Hardhat's default) prices
 * calldata, memory, keccak and logs the same, but caps a transaction at 2^24 gas (EIP-7825).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { NetworkManager } from "hardhat/types/network";
import { keccak256, toUtf8Bytes, type TransactionResponse } from "ethers";
import { activationHash, encodeActivations, type ActivationEncoding, type EncodedActivations } from "../../../protocol/activations.js";
import { onChain } from "../../../node/chain/dataResponder.js";
import { MerkleTree } from "../../../protocol/merkle.js";
import { receiptLeaf, type Receipt } from "../../../protocol/receipt.js";
import { DEVNET_DATA_REQUEST_PARAMS, DEVNET_PARAMS, deployProtocol } from "../../lib/deployProtocol.js";
import { REPO_ROOT } from "./benchModels.js";
import { writeDocSections } from "./docs.js";
import { fmtInt, fmtNum, markdownTable } from "./markdown.js";

/** Osaka's per-transaction gas cap (EIP-7825). */
export const TX_GAS_CAP = 2n ** 24n;
/** Hardhat's default block gas limit (and about mainnet's in 2026). */
export const BLOCK_GAS_LIMIT = 60_000_000n;
/** Largest transaction Geth's pool accepts and relays (txMaxSize, 4 × 32 KiB). */
export const TXPOOL_MAX_BYTES = 128 * 1024;
/** Largest RLP-encoded block since Osaka (EIP-7934: 10 MiB less a 2 MiB margin); EDR enforces it. */
export const BLOCK_MAX_BYTES = 8 * 1024 * 1024;
/** Calldata above this cannot be mined even alone in a block (room for the block's own fields). */
const MINEABLE_CALLDATA_BYTES = BLOCK_MAX_BYTES - 64 * 1024;
const TOKENS = [1, 64, 512] as const;
const ENCODINGS: readonly ActivationEncoding[] = ["fp32", "fp16"];
const SHIPPED_MODEL = "kjv-llama-6m";

export interface DataPostCase {
  model: string;
  hidden: number;
  tokens: number;
  encoding: ActivationEncoding;
  /** Input plus output payload bytes. */
  payloadBytes: number;
  /** The postData transaction's calldata, bytes. */
  calldataBytes: number;
  gas: bigint;
  /** True when the transaction cannot be mined (over BLOCK_MAX_BYTES): its gas is eth_estimateGas's. */
  estimated: boolean;
}

export interface DataRequestGas {
  cases: DataPostCase[];
  /** requestData for one receipt of a one-batch tree of `cases.length` receipts. */
  request: bigint;
  /** slashUnanswered: two slashes, unlock, failed audit, bond back. */
  slash: bigint;
  proofLength: number;
}

/** (rows, hidden) values in [-4, 4), deterministic (a 32-bit LCG), different per seed. */
function activations(rows: number, hidden: number, seed: number): Float32Array {
  const out = new Float32Array(rows * hidden);
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < out.length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = (x / 2 ** 32) * 8 - 4;
  }
  return out;
}

async function gasOf(tx: Promise<TransactionResponse>): Promise<bigint> {
  const receipt = await (await tx).wait();
  if (receipt === null || receipt.status !== 1) throw new Error("transaction failed");
  return receipt.gasUsed;
}

/** Deploys the protocol on its own network and measures requestData, postData per case, and slashUnanswered. */
export async function measureDataRequestGas(network: NetworkManager): Promise<DataRequestGas> {
  const shippedHidden = (JSON.parse(readFileSync(join(REPO_ROOT, "models", SHIPPED_MODEL, "config.json"), "utf8")) as { hidden_size: number }).hidden_size;
  const models = [
    { model: `${SHIPPED_MODEL} (shipped)`, hidden: shippedHidden },
    { model: "hidden 4096 (7–8B class)", hidden: 4096 },
  ];
  const connection = await network.create({ override: { hardfork: "prague", blockGasLimit: 2n ** 40n } });
  const { ethers } = connection;
  const [deployer, server, requester, other] = await ethers.getSigners();
  if (deployer === undefined || server === undefined || requester === undefined || other === undefined) throw new Error("the network has too few accounts");
  // every size is measured, so none is refused as too large to request
  const p = await deployProtocol(deployer, { ...DEVNET_PARAMS, dataRequests: { ...DEVNET_DATA_REQUEST_PARAMS, maxTokens: BigInt(Math.max(...TOKENS)) } });
  const { token, registry, staking, commitments, dataRequests } = p;
  const [stakingAddr, requestsAddr] = [await staking.getAddress(), await dataRequests.getAddress()];
  const variantId = keccak256(toUtf8Bytes("eFed data-request benchmark manifest"));
  await (await registry.registerVariant(variantId, 32, "ipfs://data-request-bench")).wait();

  const steps: { model: string; hidden: number; tokens: number; encoding: ActivationEncoding; input: EncodedActivations; output: EncodedActivations }[] = [];
  for (const { model, hidden } of models) {
    for (const tokens of TOKENS) {
      for (const encoding of ENCODINGS) {
        const seed = steps.length;
        steps.push({
          model,
          hidden,
          tokens,
          encoding,
          input: encodeActivations(activations(tokens, hidden, 2 * seed + 1), tokens, hidden, encoding),
          output: encodeActivations(activations(tokens, hidden, 2 * seed + 2), tokens, hidden, encoding),
        });
      }
    }
  }
  // the server stakes enough for one lock per request; another server is slashed for the slash row
  const lockEach = DEVNET_DATA_REQUEST_PARAMS.serverSlash;
  const serverStake = DEVNET_PARAMS.stake.serverBaseStake + DEVNET_PARAMS.stake.serverStakePerLayer * 16n + lockEach * BigInt(steps.length + 1);
  for (const [who, amount] of [[server, serverStake], [other, serverStake], [requester, DEVNET_PARAMS.stake.verifierMinStake]] as const) {
    await (await token.mint(who.address, amount)).wait();
    await (await token.connect(who).approve(stakingAddr, amount)).wait();
    await (await staking.connect(who).deposit(amount)).wait();
  }
  await (await staking.connect(server).registerServer(variantId, 0, 16, "wss://server.example/ws", 1n)).wait();
  await (await staking.connect(other).registerServer(variantId, 0, 16, "wss://other.example/ws", 1n)).wait();
  await (await staking.connect(requester).registerVerifier()).wait();
  const bonds = DEVNET_DATA_REQUEST_PARAMS.requestBond * BigInt(steps.length + 1);
  await (await token.mint(requester.address, bonds)).wait();
  await (await token.connect(requester).approve(requestsAddr, bonds)).wait();

  const receiptOf = (owner: string, index: number, input: EncodedActivations, output: EncodedActivations): Receipt => ({
    sessionId: keccak256(toUtf8Bytes(`data-request bench session ${index}`)),
    step: 0n,
    firstLayer: 0,
    lastLayer: 16,
    variantId,
    inputHash: activationHash(input),
    outputHash: activationHash(output),
    tokens: input.rows,
    server: owner,
  });
  const receipts = steps.map((s, i) => receiptOf(server.address, i, s.input, s.output));
  const tree = new MerkleTree(receipts.map(receiptLeaf));
  await (await commitments.connect(server).postBatch(tree.root, variantId, 0, 16, receipts.length, 0, 0)).wait();

  const cases: DataPostCase[] = [];
  let request = 0n;
  for (const [i, s] of steps.entries()) {
    const opened = await gasOf(dataRequests.connect(requester).requestData(0n, receipts[i]!, tree.proof(i)));
    if (i === 0) request = opened;
    const id = await dataRequests.requestCount();
    const payloadBytes = s.input.payload.byteLength + s.output.payload.byteLength;
    const call = await dataRequests.connect(server).postData.populateTransaction(id, onChain(s.input), onChain(s.output));
    const calldataBytes = (call.data.length - 2) / 2;
    const base = { model: s.model, hidden: s.hidden, tokens: s.tokens, encoding: s.encoding, payloadBytes, calldataBytes };
    if (calldataBytes > MINEABLE_CALLDATA_BYTES) {
      // too large for any block: the same execution, priced without mining it
      cases.push({ ...base, gas: await server.estimateGas(call), estimated: true });
      continue;
    }
    const posted = await gasOf(server.sendTransaction(call));
    if ((await dataRequests.request(id)).status !== 2n) throw new Error(`request ${id} not answered`);
    cases.push({ ...base, gas: posted, estimated: false });
  }

  // an unanswered request of the other server, slashed after the response period
  const lone = steps[0]!;
  const loneReceipt = receiptOf(other.address, 0, lone.input, lone.output);
  const loneLeaf = receiptLeaf(loneReceipt);
  await (await commitments.connect(other).postBatch(loneLeaf, variantId, 0, 16, 1, 0, 0)).wait();
  await (await dataRequests.connect(requester).requestData(1n, loneReceipt, [])).wait();
  await connection.networkHelpers.time.increase(DEVNET_DATA_REQUEST_PARAMS.responsePeriod + 1n);
  const slash = await gasOf(dataRequests.slashUnanswered(await dataRequests.requestCount()));
  await connection.close();
  return { cases, request, slash, proofLength: tree.proof(0).length };
}

/** Where a posting stands against the limits of a real chain. */
function fits(c: DataPostCase): string {
  if (c.calldataBytes > MINEABLE_CALLDATA_BYTES) return "no: over the 8 MiB block size (EIP-7934)";
  if (c.gas > BLOCK_GAS_LIMIT) return "no: over a 60M block";
  if (c.gas > TX_GAS_CAP) return "no: over Osaka's 2^24 per transaction";
  if (c.calldataBytes > TXPOOL_MAX_BYTES) return "only sent directly to a producer: over Geth's 128 KiB pool limit";
  return "yes";
}

/** The markdown table of the measured postings. */
export function dataRequestTable(r: DataRequestGas): string {
  return markdownTable(
    ["model", "hidden", "tokens", "encoding", "payload (in + out)", "calldata", "postData gas", "gas per payload byte", "fits a transaction?"],
    r.cases.map((c) => [
      c.model,
      fmtInt(c.hidden),
      fmtInt(c.tokens),
      c.encoding,
      c.payloadBytes >= 1024 * 1024 ? `${fmtNum(c.payloadBytes / 1024 / 1024, 1)} MiB` : `${fmtNum(c.payloadBytes / 1024, 1)} KiB`,
      fmtInt(c.calldataBytes),
      `${fmtInt(c.gas)}${c.estimated ? " (estimated)" : ""}`,
      fmtNum(Number(c.gas) / c.payloadBytes, 1),
      fits(c),
    ]),
    ["left", "right", "right", "left", "right", "right", "right", "right", "left"],
  );
}

/** The "Withheld data on chain" section of docs/verification.md (without its heading). */
export function dataRequestSection(r: DataRequestGas): string {
  const p = DEVNET_DATA_REQUEST_PARAMS;
  const eth = (v: bigint): string => (Number(v) / 1e18).toString();
  const find = (hidden: number, tokens: number, encoding: ActivationEncoding): DataPostCase => {
    const c = r.cases.find((x) => x.hidden === hidden && x.tokens === tokens && x.encoding === encoding);
    if (c === undefined) throw new Error(`no measured case hidden ${hidden}, ${tokens} tokens, ${encoding}`);
    return c;
  };
  const fitting = r.cases.filter((c) => fits(c) === "yes");
  const largest = fitting.reduce((a, b) => (b.payloadBytes > a.payloadBytes ? b : a));
  const perByte = r.cases.filter((c) => !c.estimated && c.payloadBytes >= 64 * 1024).map((c) => Number(c.gas) / c.payloadBytes);
  const shipped = r.cases[0]!.hidden;
  return `<!-- Written by \`npm run bench:gas\` (scripts/bench/lib/dataRequestGas.ts). Re-run it rather than editing the numbers. -->

A server that lists a committed receipt but will not produce its step when an audit asks
(\`FetchSessionStep\` answers NotFound, times out, or the connection drops) is asked again **on chain**
(\`contracts/DataRequests.sol\`). The verifier (\`node/verifier/dataRequest.ts\`) names the receipt
(batch id, receipt, Merkle proof under the root its server posted) inside the batch's challenge window and
puts up a bond (${eth(p.requestBond)} EFED on the devnet); up to ${eth(p.serverSlash)} EFED of the
server's stake is locked under that request alone. The server (\`node/chain/dataResponder.ts\`, run
by \`efed server --rpc\`) answers within ${p.responsePeriod / 3600n} h by posting the step's input and output
activations in calldata; the contract recomputes both activation hashes exactly as
\`protocol/activations.ts\` does (encoding, rows and columns little-endian, then the payload, under
keccak256) and accepts only the receipt's hashes; the data are emitted in \`DataPosted\`, so the
requester (or anyone) audits them from the chain: the verifier replays the session with the posted
step in place of the withheld one (earlier steps fetched as usual) and disputes it if it fails.
Answered: the lock is released and the bond pays the server's gas. Unanswered past the deadline:
anyone calls \`slashUnanswered\`, the locked stake is slashed (${Number(p.requesterShareBps) / 100} % to the
requester, the rest to the verifier reward pool), a failed audit is recorded in TrustScores and the
bond goes back to the requester. One request per receipt, ever, and none for a receipt already under
a dispute.

**Why the bond pays the server.** Posting costs the server gas that grows with the step (table
below) while a request costs the requester a fixed ${fmtInt(r.request)} gas. If an answered request
cost the requester nothing, any verifier could make honest servers post data at will. Paying the
bond to the answering server makes a needless request cost its sender; governance sizes the bond to
the posting cost of a typical step, so a server that withholds off chain only to collect bonds earns
nothing beyond its gas, and every such answer is public.

**What it does not cover.** A server that refuses to *list* a batch leaves no committed receipt to
name. Requesting "the receipt at leaf index i" cannot be enforced with Commitments' tree: inner
nodes hash sorted pairs, so a proof does not bind a position, and the server could answer every such
request with the same receipt. That case stays open (docs/threat-model.md); it needs a
position-binding tree or the listing published where the chain can see it.

**Gas.** Opening a request costs ${fmtInt(r.request)} gas (a proof of ${r.proofLength} siblings
against the server's posted root, the lock and the bond); slashing an unanswered one ${fmtInt(r.slash)} (two transfers of
stake, the unlock, the failed audit, the bond back). Posting the answer, per case (input and output
of one step of the shipped model, hidden ${shipped}, and of a hidden size of 4096; pseudo-random values, so
almost no zero bytes, like real activations; rows marked estimated cannot be mined at all and are
priced with \`eth_estimateGas\`):

${dataRequestTable(r)}

From 64 KiB of payload on, the answer costs ${fmtNum(Math.min(...perByte), 1)}–${fmtNum(Math.max(...perByte), 1)} gas per payload byte: the
transaction pays the calldata floor of EIP-7623 (40 gas per non-zero byte for data-heavy transactions,
since Prague), which exceeds its execution (copying into memory, keccak256 at 6 gas per word, the
\`DataPosted\` log at 8 gas per byte); at 16 MiB the quadratic memory cost takes over. A decode step fits
a transaction on any EVM chain:
${fmtInt(find(4096, 1, "fp16").gas)} gas at hidden 4096 in fp16, ${fmtInt(find(shipped, 1, "fp16").gas)} for the shipped model. The largest
step measured that fits a transaction and Geth's pool is ${find(largest.hidden, largest.tokens, largest.encoding).tokens} tokens at hidden ${largest.hidden} in ${largest.encoding}
(${fmtInt(largest.gas)} gas). Prefills at hidden 4096 do not fit: 64 tokens in fp16 is over Osaka's 2^24
per-transaction cap, 512 tokens is over the 8 MiB block size.

So the on-chain answer settles withholding for decode steps and small prefills only. An honest
server must never be slashed for data it could not post, so the contract refuses requests for steps
of more than \`maxTokens\` tokens (${p.maxTokens} on the devnet, sized for hidden ${shipped}: ${p.maxTokens} tokens in fp32 are the
bytes of the 64-token fp16 row, ${fmtInt(find(shipped, 64, "fp16").gas)} gas, within Geth's pool limit); a deployment serving hidden
4096 would set it to 3 (3 tokens in fp32 are 96 KiB of payload, about 4M gas). A withheld
step above the cap goes to Disputes as before: the committee asks the server itself, and a server
that withholds from the committee too is voted at fault. Posting large steps would need a chunked
activation hash (one hash per block of rows, so a step can be answered over several transactions)
or blob data (128 KiB per blob, priced apart): neither is built.
`;
}

/** Replaces (or appends) the "Withheld data on chain" section of docs/verification.md (with EFED_WRITE_DOCS=1). */
export function writeDataRequestSection(r: DataRequestGas): void {
  writeDocSections(join(REPO_ROOT, "docs", "verification.md"), "Verification", { "Withheld data on chain": dataRequestSection(r) });
}
