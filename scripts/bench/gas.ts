/**
 * Gas benchmark of the eFed contracts: `npm run bench:gas`.
 *
 * Deploys the protocol (DEVNET_PARAMS) on Hardhat's in-process EDR network, runs every on-chain
 * operation of a server's, a verifier's and a client's life, and reads `gasUsed` from each
 * transaction receipt. Commitment batches carry real receipts (built with protocol/receipt.ts) under
 * a real Merkle root (protocol/merkle.ts); receipt proofs are checked on chain with `verifyReceipt`
 * (priced with estimateGas, as it is a view). Then it derives the amortized on-chain gas per paid
 * query under stated assumptions (scripts/bench/lib/model.ts), prints both tables and writes them,
 * with an explanation, to docs/gas.md.
 *
 * Gas is deterministic for a given bytecode, hardfork and chain state, so the output does not
 * depend on the machine; only the runtime printed at the end does.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import hre, { network } from "hardhat";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/types";
import { Signature, TypedDataEncoder, ZeroHash, concat, keccak256, parseEther, recoverAddress, solidityPackedKeccak256, toUtf8Bytes, type ContractTransactionResponse } from "ethers";
import { RECEIPT_CHAIN_TYPES, receiptDomain, voucherDomain } from "../../protocol/eip712.js";
import { MerkleTree, verifyMerkleProof } from "../../protocol/merkle.js";
import { receiptLeaf, type Receipt } from "../../protocol/receipt.js";
import { signVoucher } from "../../protocol/voucher.js";
import { isWinningTicket, recipientRandHash, signTicket, ticketDomain, ticketHash, ticketTerms, type Ticket } from "../../protocol/tickets.js";
import { isSampled } from "../../node/verifier/sample.js";
import { DEVNET_PARAMS, deployProtocol } from "../lib/deployProtocol.js";
import { WRITE_DOCS, writeDocSections } from "./lib/docs.js";
import { fmtInt, fmtNum, markdownTable } from "./lib/markdown.js";
import { measureDataRequestGas, writeDataRequestSection } from "./lib/dataRequestGas.js";
import { lifecycle, perQuery, serverQueriesPerSecond, type MeasuredCosts, type Scenario } from "./lib/model.js";
import { ticketPerQuery, targetFaceValueWei, type TicketAssumptions, type TicketCosts, type TicketScenario } from "./lib/ticketModel.js";

const startedAt = performance.now();
const TARGET_GAS_PER_QUERY = 1_000;
const BATCH_SIZES = [1, 100, 10_000] as const;
/** Steps per session in the synthetic receipts: one prefill then decode steps (one token each). */
const STEPS_PER_SESSION = 256;
const PROMPT_TOKENS = 128;
const NUM_LAYERS = 32;
const SERVER_LAYERS: readonly [number, number] = [0, 16];
const ENDPOINT = "wss://server-1.efed.example:8443/ws";
const MANIFEST_URI = "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
const PRICE_PER_TOKEN = parseEther("0.000001");

const connection = await network.create();
const { ethers, networkHelpers } = connection;
const chainId = (await ethers.provider.getNetwork()).chainId;
const signers = await ethers.getSigners();
const signer = (i: number): HardhatEthersSigner => {
  const s = signers[i];
  if (s === undefined) throw new Error(`the network has no account #${i}`);
  return s;
};
const deployer = signer(0);
const warmServer = signer(1); // background activity, so measured rows are not someone's first-ever write
const server = signer(2);
const verifier = signer(3);
const warmClient = signer(4);
const client = signer(5);
const permitClient = signer(6);
const holder = signer(7);
const freshRecipient = signer(8).address; // never receives tokens before the baseline transfer

const p = await deployProtocol(deployer, DEVNET_PARAMS);
const { token, registry, staking, commitments, channels } = p;
const verifierStake = DEVNET_PARAMS.stake.verifierMinStake;
const [tokenAddr, stakingAddr, commitmentsAddr, channelsAddr] = await Promise.all(
  [token, staking, commitments, channels].map((c) => c.getAddress()),
) as [string, string, string, string];

// ------------------------------------------------------------------ measurement helpers

interface Row {
  section: string;
  operation: string;
  conditions: string;
  gas: bigint;
}
const rows: Row[] = [];

/** Sends the transaction, requires success, returns its receipt's gasUsed. */
async function gasOf(tx: Promise<ContractTransactionResponse>): Promise<bigint> {
  const receipt = await (await tx).wait();
  if (receipt === null || receipt.status !== 1) throw new Error("transaction failed");
  return receipt.gasUsed;
}

async function measure(section: string, operation: string, conditions: string, tx: Promise<ContractTransactionResponse>): Promise<bigint> {
  const gas = await gasOf(tx);
  rows.push({ section, operation, conditions, gas });
  return gas;
}

function record(section: string, operation: string, conditions: string, gas: bigint): bigint {
  rows.push({ section, operation, conditions, gas });
  return gas;
}

function check(ok: boolean, what: string): asserts ok {
  if (!ok) throw new Error(`benchmark sanity check failed: ${what}`);
}

/** An EIP-2612 permit of `value` from `owner` to `spender`. */
async function permit(owner: HardhatEthersSigner, spender: string, value: bigint): Promise<{ deadline: bigint; sig: Signature }> {
  const deadline = PERMIT_DEADLINE;
  const nonce = await token.nonces(owner.address);
  const sig = await owner.signTypedData(
    { name: "eFed", version: "1", chainId, verifyingContract: tokenAddr },
    {
      Permit: [
        { name: "owner", type: "address" },
        { name: "spender", type: "address" },
        { name: "value", type: "uint256" },
        { name: "nonce", type: "uint256" },
        { name: "deadline", type: "uint256" },
      ],
    },
    { owner: owner.address, spender, value, nonce, deadline },
  );
  return { deadline, sig: Signature.from(sig) };
}

// Gas depends on calldata bytes (a zero byte is cheaper than another), so every value that reaches
// calldata is fixed rather than read from the wall clock: the chain clock starts at CLOCK_START, the
// batches' time ranges are CLOCK_START + i, the permit deadline is a constant. Signatures are
// deterministic (RFC 6979) over deterministic messages, so the whole output is reproducible.
const CLOCK_START = 0x9191_9191n; // 2047-04-12, no zero byte
const PERMIT_DEADLINE = CLOCK_START + 0x1111_1111n;
if (BigInt((await ethers.provider.getBlock("latest"))?.timestamp ?? 0) >= CLOCK_START) {
  throw new Error("the chain clock is past CLOCK_START; raise it");
}
await networkHelpers.time.increaseTo(CLOCK_START);

// ------------------------------------------------------------------ setup (not measured)

const variantId = keccak256(toUtf8Bytes("eFed benchmark manifest"));
const registerVariantGas = await gasOf(registry.registerVariant(variantId, NUM_LAYERS, MANIFEST_URI));

const serverStake = DEVNET_PARAMS.stake.serverBaseStake + DEVNET_PARAMS.stake.serverStakePerLayer * BigInt(SERVER_LAYERS[1] - SERVER_LAYERS[0]);
for (const s of [warmServer, server, verifier, warmClient, client, permitClient, holder]) {
  await gasOf(token.mint(s.address, parseEther("100000")));
}

// Background: another server already staked, registered and posted, another client already has an
// open channel that was redeemed once (so the reward pool, the staking and channel contracts and the
// batch array already hold non-zero state, as on a live network).
await gasOf(token.connect(warmServer).approve(stakingAddr, serverStake));
await gasOf(staking.connect(warmServer).deposit(serverStake));
await gasOf(staking.connect(warmServer).registerServer(variantId, 16, 32, "wss://server-0.efed.example:8443/ws", PRICE_PER_TOKEN));
await gasOf(commitments.connect(warmServer).postBatch(keccak256(toUtf8Bytes("warm-up batch")), variantId, 16, 32, 1, CLOCK_START, CLOCK_START));

// ------------------------------------------------------------------ staking

const STAKING = "Staking";
const approveStake = await measure(STAKING, "token.approve(staking)", "exact amount, allowance 0 → amount", token.connect(server).approve(stakingAddr, serverStake));
const depositStake = await measure(STAKING, "deposit", "operator's first deposit; allowance spent to 0", staking.connect(server).deposit(serverStake));
record(STAKING, "**approve + deposit**", "two transactions", approveStake + depositStake);
{
  check((await token.allowance(verifier.address, stakingAddr)) === 0n, "verifier has no prior allowance");
  const { deadline, sig } = await permit(verifier, stakingAddr, verifierStake);
  await measure(STAKING, "**depositWithPermit**", "operator's first deposit and first permit; one transaction", staking.connect(verifier).depositWithPermit(verifierStake, deadline, sig.v, sig.r, sig.s));
  check((await staking.operator(verifier.address)).bonded === verifierStake, "permit deposit bonded the stake");
}
await measure(
  STAKING,
  "**registerServer**",
  `new server, layers [${SERVER_LAYERS[0]}, ${SERVER_LAYERS[1]}) of ${NUM_LAYERS}, ${toUtf8Bytes(ENDPOINT).length}-byte endpoint`,
  staking.connect(server).registerServer(variantId, SERVER_LAYERS[0], SERVER_LAYERS[1], ENDPOINT, PRICE_PER_TOKEN),
);
await measure(STAKING, "**registerVerifier**", "new verifier", staking.connect(verifier).registerVerifier());
check(await staking.isActiveServer(server.address), "server is active");
check(await staking.isActiveVerifier(verifier.address), "verifier is active");
record("Model registry", "registerVariant", `one-off per model variant, ${toUtf8Bytes(MANIFEST_URI).length}-byte manifest URI`, registerVariantGas);

// ------------------------------------------------------------------ commitments

/** `n` receipts of `owner`: sessions of one prefill step then decode steps, distinct per `label`. */
function makeReceipts(label: string, n: number, owner = server.address): Receipt[] {
  const out: Receipt[] = [];
  for (let i = 0; i < n; i++) {
    const session = Math.floor(i / STEPS_PER_SESSION);
    const step = i % STEPS_PER_SESSION;
    out.push({
      sessionId: solidityPackedKeccak256(["string", "uint256"], [label, session]),
      step: BigInt(step),
      firstLayer: SERVER_LAYERS[0],
      lastLayer: SERVER_LAYERS[1],
      variantId,
      inputHash: solidityPackedKeccak256(["string", "uint256", "string"], [label, i, "in"]),
      outputHash: solidityPackedKeccak256(["string", "uint256", "string"], [label, i, "out"]),
      tokens: step === 0 ? PROMPT_TOKENS : 1,
      server: owner,
    });
  }
  return out;
}

interface BatchResult {
  receipts: number;
  postGas: bigint;
  proofLength: number;
  verifyGas: bigint;
}
const batchResults: BatchResult[] = [];
const rDomain = receiptDomain(chainId, commitmentsAddr);
let previousTo = 0n;
let serverBatches = 0;
let receiptChainSignerGas = 0n;
async function postReceipts(label: string, receipts: Receipt[]): Promise<{ gas: bigint; batchId: bigint; tree: MerkleTree }> {
  const tree = new MerkleTree(receipts.map(receiptLeaf));
  // Each batch covers [previous batch's end, CLOCK_START + its index]; every block since moved the clock on.
  const toTime = CLOCK_START + BigInt(serverBatches + 1);
  const fromTime = serverBatches === 0 ? toTime : previousTo;
  const batchId = await commitments.batchCount();
  const gas = await gasOf(
    commitments.connect(server).postBatch(tree.root, variantId, SERVER_LAYERS[0], SERVER_LAYERS[1], receipts.length, fromTime, toTime),
  );
  previousTo = toTime;
  serverBatches++;
  const b = await commitments.batch(batchId);
  check(b.root === tree.root && b.server === server.address && b.receiptCount === BigInt(receipts.length), `batch ${label} stored`);
  return { gas, batchId, tree };
}

{
  // The server's first batch also creates its batch-id list: measured once, kept out of the steady state.
  const first = await postReceipts("first", makeReceipts("first", 1));
  record("Commitments", "postBatch", "server's first batch (1 receipt)", first.gas);
}
for (const n of BATCH_SIZES) {
  const label = `batch-${n}`;
  const receipts = makeReceipts(label, n);
  const { gas, batchId, tree } = await postReceipts(label, receipts);
  // Audit the deepest leaf (index 0 has a sibling on every level): the longest proof of the batch.
  const index = 0;
  const receipt = receipts[index]!;
  const proof = tree.proof(index);
  check(verifyMerkleProof(tree.root, receiptLeaf(receipt), proof), `TS proof of ${label}`);
  check(await commitments.verifyReceipt(batchId, receipt, proof), `on-chain verifyReceipt of ${label}`);
  check(!(await commitments.verifyReceipt(batchId, { ...receipt, tokens: receipt.tokens + 1 }, proof)), `tampered receipt rejected in ${label}`);
  const verifyGas = await commitments.verifyReceipt.estimateGas(batchId, receipt, proof);
  batchResults.push({ receipts: n, postGas: gas, proofLength: proof.length, verifyGas });
  check((await commitments.receiptLeaf(receipt)) === receiptLeaf(receipt), "TS and contract receipt leaves agree");
  // Signing is off chain: the server signs the chain of the audited receipt's session (its steps in
  // this batch) once; check the contract's chain, digest and recovered signer agree with ethers'.
  const session = receipts.filter((r) => r.sessionId === receipt.sessionId);
  const heads = [ZeroHash]; // heads[n + 1] is the head after step n
  for (const r of session) heads.push(keccak256(concat([heads.at(-1)!, receiptLeaf(r)])));
  const head = heads.at(-1)!;
  check((await commitments.receiptChainNext(heads.at(-2)!, receiptLeaf(session.at(-1)!))) === head, "TS and contract receipt chains agree");
  const chain = { sessionId: receipt.sessionId, server: server.address, lastStep: session.at(-1)!.step, head };
  const signature = await server.signTypedData(rDomain, RECEIPT_CHAIN_TYPES, chain);
  check((await commitments.receiptChainDigest(chain)) === TypedDataEncoder.hash(rDomain, RECEIPT_CHAIN_TYPES, chain), "TS and contract chain digests agree");
  check(recoverAddress(TypedDataEncoder.hash(rDomain, RECEIPT_CHAIN_TYPES, chain), signature) === server.address, "TS recovers the chain signer");
  check((await commitments.receiptChainSigner(chain, signature)) === server.address, "contract recovers the chain signer");
  receiptChainSignerGas = await commitments.receiptChainSigner.estimateGas(chain, signature);
}

// ------------------------------------------------------------------ disputes
// One full dispute inside the batch's challenge window: a verifier challenges one receipt of a
// third server (slashed here, so that the measured server keeps its stake and trust for the channel
// rows), the committee is drawn, votes 2 "at fault" to 1, and the dispute settles with every
// transfer it can make (server slashed to challenger and pool, bond returned, minority member
// penalized, majority members rewarded from the pool).

const DISPUTES = "Disputes";
const { disputes } = p;
const disputesAddr = await disputes.getAddress();
const disputeVerifiers = [9, 10, 11, 12].map(signer);
const challenger = disputeVerifiers[0]!;
for (const v of disputeVerifiers) {
  await gasOf(token.mint(v.address, parseEther("100000")));
  await gasOf(token.connect(v).approve(stakingAddr, verifierStake));
  await gasOf(staking.connect(v).deposit(verifierStake));
  await gasOf(staking.connect(v).registerVerifier());
}
const BENCH_SALT = keccak256(toUtf8Bytes("eFed benchmark vote salt"));
const disputeGas: Record<"open" | "openUnlocked" | "draw" | "commit" | "reveal" | "settle", bigint> = { open: 0n, openUnlocked: 0n, draw: 0n, commit: 0n, reveal: 0n, settle: 0n };
{
  const cheater = signer(13);
  await gasOf(token.mint(cheater.address, parseEther("100000")));
  await gasOf(token.connect(cheater).approve(stakingAddr, serverStake));
  await gasOf(staking.connect(cheater).deposit(serverStake));
  await gasOf(staking.connect(cheater).registerServer(variantId, SERVER_LAYERS[0], SERVER_LAYERS[1], ENDPOINT, PRICE_PER_TOKEN));
  const receipts = makeReceipts("disputed", 100, cheater.address);
  const tree = new MerkleTree(receipts.map(receiptLeaf));
  const batchId = await commitments.batchCount();
  const postedAt = CLOCK_START + BigInt(serverBatches);
  await gasOf(commitments.connect(cheater).postBatch(tree.root, variantId, SERVER_LAYERS[0], SERVER_LAYERS[1], receipts.length, postedAt, postedAt));
  const a = { batchId, receipts: receipts.length, receipt: receipts[0]!, proof: tree.proof(0) };
  const pool = await staking.verifierCount();
  await gasOf(token.connect(challenger).approve(disputesAddr, parseEther("10000")));
  disputeGas.open = await measure(
    DISPUTES,
    "**openDispute**",
    `receipt of a ${a.receipts}-receipt batch (proof of ${a.proof.length}); locks the server's stake, takes the bond, keeps the stake slashable`,
    disputes.connect(challenger).openDispute(a.batchId, a.receipt, a.proof),
  );
  const id = await disputes.disputeCount();
  // Stake exhaustion: other disputes hold all of the server's stake, yet a challenge still opens (and
  // is settled against what is free at settlement). Opened inside the window, left open.
  for (let i = 1; (await staking.freeBonded(cheater.address)) > 0n; i++) {
    await gasOf(disputes.connect(challenger).openDispute(a.batchId, receipts[i]!, tree.proof(i)));
  }
  const next = disputeVerifiers.length + 40;
  disputeGas.openUnlocked = await measure(
    DISPUTES,
    "openDispute",
    "all of the server's stake held by other disputes: locks nothing, base bond",
    disputes.connect(challenger).openDispute(a.batchId, receipts[next]!, tree.proof(next)),
  );
  check((await disputes.dispute(await disputes.disputeCount())).serverLocked === 0n, "the last dispute locked nothing");
  await networkHelpers.mine(1);
  disputeGas.draw = await measure(DISPUTES, "drawCommittee", `${DEVNET_PARAMS.disputes.committeeSize} of ${pool} verifiers; locks each member's stake`, disputes.drawCommittee(id));
  const members = (await disputes.committee(id)).map((address) => signers.find((s) => s.address === address)!);
  const fault = (i: number): boolean => i < 2;
  for (const [i, m] of members.entries()) {
    const gas = await gasOf(disputes.connect(m).commitVote(id, await disputes.voteCommitment(id, m.address, fault(i), BENCH_SALT)));
    if (i === 0) disputeGas.commit = record(DISPUTES, "**commitVote**", "one committee member", gas);
  }
  await networkHelpers.time.increaseTo((await disputes.dispute(id)).commitDeadline + 1n);
  for (const [i, m] of members.entries()) {
    const gas = await gasOf(disputes.connect(m).revealVote(id, fault(i), BENCH_SALT));
    if (i === 0) disputeGas.reveal = record(DISPUTES, "**revealVote**", "one committee member", gas);
  }
  disputeGas.settle = await measure(
    DISPUTES,
    "**settle**",
    "server at fault 2–1: two slashes, bond back, one member penalized, two rewarded, all locks released, trust recorded",
    disputes.settle(id),
  );
  check((await disputes.dispute(id)).outcome === 1n, "the dispute settled with the server at fault");
  const size = BigInt(members.length);
  record(
    DISPUTES,
    "one dispute, all transactions",
    `open + draw + ${size} commits + ${size} reveals + settle`,
    disputeGas.open + disputeGas.draw + size * (disputeGas.commit + disputeGas.reveal) + disputeGas.settle,
  );
}

// ------------------------------------------------------------------ payment channels

// Clients may open channels only to a server past its probation (IStaking.isEligible).
await networkHelpers.time.increase(DEVNET_PARAMS.timing.probationPeriod);

const CHANNELS = "Payment channels";
const vDomain = voucherDomain(chainId, channelsAddr);
const deposit = parseEther("100");
const voucher = async (from: HardhatEthersSigner, channelId: string, cumulativeAmount: bigint): Promise<string> =>
  signVoucher(from, vDomain, { channelId, cumulativeAmount });

{
  // Background channel: stays open so the channel contract keeps a balance; its redemption gives
  // the reward pool its first fee.
  await gasOf(token.connect(warmClient).approve(channelsAddr, deposit));
  const id = await channels.nextChannelId(warmClient.address, server.address);
  await gasOf(channels.connect(warmClient).open(server.address, deposit));
  await gasOf(channels.connect(server).redeem(id, parseEther("1"), await voucher(warmClient, id, parseEther("1"))));
}

const ch1 = await channels.nextChannelId(client.address, server.address);
const approveOpen1 = await measure(CHANNELS, "token.approve(channels)", "exact amount", token.connect(client).approve(channelsAddr, deposit));
const open1 = await measure(CHANNELS, "open", "client's first channel", channels.connect(client).open(server.address, deposit));
record(CHANNELS, "**approve + open**", "client's first channel", approveOpen1 + open1);
const ch2 = await channels.nextChannelId(client.address, server.address);
const approveOpen2 = await gasOf(token.connect(client).approve(channelsAddr, deposit));
const open2 = await measure(CHANNELS, "open", "client's later channel", channels.connect(client).open(server.address, deposit));
const approveOpenLater = record(CHANNELS, "**approve + open**", "client's later channel", approveOpen2 + open2);
check((await channels.channel(ch2)).deposit === deposit, "channel 2 opened");

let openWithPermitLater = 0n;
const permitChannels: string[] = [];
for (const [i, conditions] of ["client's first channel and first permit", "client's later channel and later permit"].entries()) {
  const { deadline, sig } = await permit(permitClient, channelsAddr, deposit);
  permitChannels.push(await channels.nextChannelId(permitClient.address, server.address));
  const gas = await measure(CHANNELS, "**openWithPermit**", `${conditions}; one transaction`, channels.connect(permitClient).openWithPermit(server.address, deposit, deadline, sig.v, sig.r, sig.s));
  if (i === 1) openWithPermitLater = gas;
}
const [pch1, pch2] = permitChannels as [string, string];

const topUpAmount = parseEther("50");
const approveTopUp = await gasOf(token.connect(client).approve(channelsAddr, topUpAmount));
const topUp = await measure(CHANNELS, "topUp", "exact approval spent", channels.connect(client).topUp(ch1, topUpAmount));
record(CHANNELS, "**approve + topUp**", "two transactions", approveTopUp + topUp);

const redeemFirst = await measure(CHANNELS, "**redeem**", "first redemption of the channel (paid 0 → x); fee to pool", channels.connect(server).redeem(ch1, parseEther("1"), await voucher(client, ch1, parseEther("1"))));
const redeemLater = await measure(CHANNELS, "**redeem**", "later redemption (paid x → y); fee to pool", channels.connect(server).redeem(ch1, parseEther("2"), await voucher(client, ch1, parseEther("2"))));
check((await channels.channel(ch1)).paid === parseEther("2"), "channel 1 redeemed twice");

const startClose = await measure(CHANNELS, "**startClose**", "client starts the timeout close", channels.connect(client).startClose(ch1));
await networkHelpers.time.increase(Number(DEVNET_PARAMS.closeTimeoutSeconds));
const finishClose = await measure(CHANNELS, "**finishClose**", `after the ${DEVNET_PARAMS.closeTimeoutSeconds / 3600n} h timeout; refunds the client`, channels.connect(client).finishClose(ch1));
const clientClose = record(CHANNELS, "startClose + finishClose", "client-driven close, two transactions", startClose + finishClose);
const redeemBeforeClose = await gasOf(channels.connect(server).redeem(ch2, parseEther("1"), await voucher(client, ch2, parseEther("1"))));
const closeByServer = await measure(CHANNELS, "**closeByServer**", "after the server's last redemption; refunds the client", channels.connect(server).closeByServer(ch2));
record(CHANNELS, "redeem + closeByServer", "final voucher on a never-redeemed channel, then close; two transactions", redeemBeforeClose + closeByServer);
check((await channels.channel(ch1)).closed && (await channels.channel(ch2)).closed, "channels closed");
// redeemAndClose: the server's final voucher and the close in one transaction. On a channel never
// redeemed before (the R = 1 life), and on one already redeemed once (the last of R > 1 redemptions).
const redeemAndCloseFirst = await measure(
  CHANNELS,
  "**redeemAndClose**",
  "never-redeemed channel (paid 0 → x); fee to pool; refunds the client",
  channels.connect(server).redeemAndClose(pch2, parseEther("1"), await voucher(permitClient, pch2, parseEther("1"))),
);
await gasOf(channels.connect(server).redeem(pch1, parseEther("1"), await voucher(permitClient, pch1, parseEther("1"))));
const redeemAndCloseLater = await measure(
  CHANNELS,
  "**redeemAndClose**",
  "after an earlier redemption (paid x → y); fee to pool; refunds the client",
  channels.connect(server).redeemAndClose(pch1, parseEther("2"), await voucher(permitClient, pch1, parseEther("2"))),
);
{
  const [c1, c2] = [await channels.channel(pch1), await channels.channel(pch2)];
  check(c1.closed && c2.closed && c1.paid === parseEther("2") && c2.paid === parseEther("1"), "redeemAndClose paid and closed both channels");
}

// ------------------------------------------------------------------ probabilistic tickets
// One client deposit in TicketBroker pays every server; servers redeem only winning tickets. A
// background client funds and is redeemed against first (so the broker and the reward pool hold
// balances); the measured client funds with a permit twice (first and later), its tickets are
// redeemed from the deposit, then from the reserve, and it unlocks and withdraws.

const TICKETS = "Ticket broker";
const { ticketBroker } = p;
const brokerAddr = await ticketBroker.getAddress();
const tDomain = ticketDomain(chainId, brokerAddr);
const ticketClient = signer(14);
const warmTicketClient = signer(15);
const TICKET_RAND = 0x7777_5555_3333_1111n; // no zero byte in calldata, fixed for reproducible gas
// Win probability 2^-1: a power of two like every winProb ticketTerms chooses (one non-zero byte of
// calldata), with the next winning nonce found off chain. Only winners reach the chain.
const BENCH_WIN_PROB = 1n << 255n;
let ticketNonce = 0x1111n;
const winningTicket = (sender: HardhatEthersSigner, faceValue: bigint): Ticket => {
  for (;;) {
    const t: Ticket = {
      recipient: server.address,
      sender: sender.address,
      faceValue,
      winProb: BENCH_WIN_PROB,
      senderNonce: ticketNonce++,
      recipientRandHash: recipientRandHash(TICKET_RAND),
      expiration: PERMIT_DEADLINE,
      auxData: keccak256(toUtf8Bytes("eFed benchmark session")),
    };
    if (isWinningTicket(ticketHash(tDomain, t), TICKET_RAND, t.winProb)) return t;
  }
};
const redeemTicket = async (t: Ticket, from: HardhatEthersSigner): Promise<ContractTransactionResponse> =>
  ticketBroker.connect(server).redeemWinningTicket(t, await signTicket(from, tDomain, t), TICKET_RAND);
const ticketDeposit = parseEther("100");
const ticketReserve = parseEther("10");
const ticketGas: Record<"fundFirst" | "fundLater" | "fundApproved" | "approveFund" | "redeem" | "redeemReserve" | "unlock" | "withdraw", bigint> = {
  fundFirst: 0n, fundLater: 0n, fundApproved: 0n, approveFund: 0n, redeem: 0n, redeemReserve: 0n, unlock: 0n, withdraw: 0n,
};
{
  for (const s of [ticketClient, warmTicketClient]) await gasOf(token.mint(s.address, parseEther("100000")));
  const approve = await gasOf(token.connect(warmTicketClient).approve(brokerAddr, ticketDeposit + ticketReserve));
  const fund = await measure(TICKETS, "fund", "client's first funding: deposit and reserve", ticketBroker.connect(warmTicketClient).fund(ticketDeposit, ticketReserve));
  ticketGas.approveFund = record(TICKETS, "**approve + fund**", "client's first funding; two transactions", approve + fund);
  await gasOf(redeemTicket(winningTicket(warmTicketClient, parseEther("1")), warmTicketClient));
  {
    const { deadline, sig } = await permit(ticketClient, brokerAddr, ticketDeposit + ticketReserve);
    ticketGas.fundFirst = await measure(
      TICKETS,
      "**fundWithPermit**",
      "client's first funding and first permit: deposit and reserve; one transaction",
      ticketBroker.connect(ticketClient).fundWithPermit(ticketDeposit, ticketReserve, deadline, sig.v, sig.r, sig.s),
    );
  }
  {
    const { deadline, sig } = await permit(ticketClient, brokerAddr, ticketDeposit);
    ticketGas.fundLater = await measure(
      TICKETS,
      "**fundWithPermit**",
      "client's later funding (deposit top-up) and later permit; one transaction",
      ticketBroker.connect(ticketClient).fundWithPermit(ticketDeposit, 0n, deadline, sig.v, sig.r, sig.s),
    );
  }
  {
    // A client that approved the broker once for an unlimited amount (OpenZeppelin's ERC20 leaves such an allowance untouched).
    await gasOf(token.connect(warmTicketClient).approve(brokerAddr, 2n ** 256n - 1n));
    ticketGas.fundApproved = await measure(TICKETS, "**fund**", "deposit top-up under a standing unlimited approval", ticketBroker.connect(warmTicketClient).fund(ticketDeposit, 0n));
  }
  ticketGas.redeem = await measure(TICKETS, "**redeemWinningTicket**", "paid from the deposit; fee to pool; paid work recorded", redeemTicket(winningTicket(ticketClient, parseEther("1")), ticketClient));
  await measure(TICKETS, "redeemWinningTicket", "a later winner of the same client and server", redeemTicket(winningTicket(ticketClient, parseEther("1")), ticketClient));
  const info = await ticketBroker.senderInfo(ticketClient.address);
  ticketGas.redeemReserve = await measure(
    TICKETS,
    "redeemWinningTicket",
    "exceeds the deposit: empties it, freezes the reserve, draws this server's share",
    redeemTicket(winningTicket(ticketClient, info.deposit + parseEther("1")), ticketClient),
  );
  check((await ticketBroker.senderInfo(ticketClient.address)).deposit === 0n, "the reserve redemption emptied the deposit");
  ticketGas.unlock = await measure(TICKETS, "**unlock**", "client starts its exit", ticketBroker.connect(ticketClient).unlock());
  await networkHelpers.time.increase(Number(DEVNET_PARAMS.tickets.unlockPeriod));
  ticketGas.withdraw = await measure(TICKETS, "**withdraw**", `after the ${DEVNET_PARAMS.tickets.unlockPeriod / 3600n} h unlock period; deposit and reserve back`, ticketBroker.connect(ticketClient).withdraw());
  record(TICKETS, "unlock + withdraw", "client takes its remainder back; two transactions", ticketGas.unlock + ticketGas.withdraw);
}

// ------------------------------------------------------------------ audit ledger
// Passed audits on chain: three verifiers record their passes of one 10,000-receipt batch of the
// measured server, sampled at the devnet rate (1 %): 1 pass, 10 passes, every sampled receipt.
// Then a dispute finds the 1-pass verifier's receipt at fault and its pass is slashed.

const AUDITS = "Audit ledger";
const { auditLedger, trust } = p;
const auditGas: Record<"first" | "ten" | "all" | "slash", bigint> = { first: 0n, ten: 0n, all: 0n, slash: 0n };
const audited: { sampled: number } = { sampled: 0 };
{
  // paid work unlocks audit rewards (rewardBudgetBps of it): the deployer stands in for redeemed channels
  await gasOf(trust.grantRole(await trust.PAYMENTS_ROLE(), deployer.address));
  await gasOf(trust.recordPayment(server.address, parseEther("1000000")));
  const receipts = makeReceipts("audited", 10_000);
  const { batchId, tree } = await postReceipts("audited", receipts);
  await networkHelpers.mine(1);
  const seed = (await ethers.provider.getBlock(Number((await commitments.batch(batchId)).postedBlock) + 1))!.hash!;
  const rate = Number(DEVNET_PARAMS.audits.sampleRatePpb) / 1e9;
  const leaves = receipts.map(receiptLeaf);
  const sampled = leaves.flatMap((leaf, i) => (isSampled(seed, leaf, rate) ? [i] : [])).sort((x, y) => (BigInt(leaves[x]!) < BigInt(leaves[y]!) ? -1 : 1));
  audited.sampled = sampled.length;
  check(sampled.length > 10, `more than 10 of 10,000 receipts sampled at 1 % (got ${sampled.length})`);
  const args = (indices: number[]) => [indices.map((i) => leaves[i]!), indices.map((i) => tree.proof(i))] as const;
  const [one, ten] = [sampled.slice(0, 1), sampled.slice(0, 10)];
  // recorders: active verifiers other than the challenger (the dispute above penalized one member below the minimum)
  const recorders: HardhatEthersSigner[] = [];
  for (const v of [verifier, ...disputeVerifiers.slice(1)]) if (await staking.isActiveVerifier(v.address)) recorders.push(v);
  const [lazy, second, third] = recorders as [HardhatEthersSigner, HardhatEthersSigner, HardhatEthersSigner];
  check(recorders.length >= 3, "three active verifiers record passes");
  auditGas.first = await measure(AUDITS, "**recordPasses**", "1 pass; the batch's first record (anchors its seed)", auditLedger.connect(lazy).recordPasses(batchId, ...args(one)));
  auditGas.ten = await measure(AUDITS, "**recordPasses**", `10 passes (proofs of ${tree.proof(0).length})`, auditLedger.connect(second).recordPasses(batchId, ...args(ten)));
  auditGas.all = await measure(AUDITS, "**recordPasses**", `${sampled.length} passes: every receipt sampled at 1 %`, auditLedger.connect(third).recordPasses(batchId, ...args(sampled)));
  check((await auditLedger.creditedOf(batchId)) === BigInt(sampled.length), "the server was credited the largest record");
  check((await p.rewards.owed(lazy.address)) > 0n, "the first recorder was rewarded");
  // the receipt the 1-pass verifier passed is disputed and found at fault; its pass is then slashed
  const i = one[0]!;
  await gasOf(disputes.connect(challenger).openDispute(batchId, receipts[i]!, tree.proof(i)));
  const id = await disputes.disputeCount();
  await networkHelpers.mine(1);
  await gasOf(disputes.drawCommittee(id));
  const members = (await disputes.committee(id)).map((address) => signers.find((s) => s.address === address)!);
  for (const m of members) await gasOf(disputes.connect(m).commitVote(id, await disputes.voteCommitment(id, m.address, true, BENCH_SALT)));
  await networkHelpers.time.increaseTo((await disputes.dispute(id)).commitDeadline + 1n);
  for (const m of members) await gasOf(disputes.connect(m).revealVote(id, true, BENCH_SALT));
  await gasOf(disputes.settle(id));
  auditGas.slash = await measure(AUDITS, "**slashFalsePass**", "a 1-pass record; half the penalty to the challenger", auditLedger.slashFalsePass(batchId, lazy.address, [leaves[i]!], 0));
  check(await auditLedger.falsePassSlashed(lazy.address, leaves[i]!), "the false pass was slashed");
}

// ------------------------------------------------------------------ naive baseline

const BASELINE = "Baseline (for comparison)";
await gasOf(token.connect(holder).transfer(client.address, 1n)); // both now hold tokens
const transferWarm = await measure(BASELINE, "ERC20 transfer", "recipient already holds EFED", token.connect(holder).transfer(client.address, parseEther("1")));
const transferFresh = await measure(BASELINE, "ERC20 transfer", "recipient's first EFED", token.connect(holder).transfer(freshRecipient, parseEther("1")));

// ------------------------------------------------------------------ amortization

const steadyPosts = batchResults.map((b) => Number(b.postGas));
const costs: MeasuredCosts = {
  postBatch: Math.max(...steadyPosts),
  open: Number(openWithPermitLater),
  redeemFirst: Number(redeemFirst),
  redeemLater: Number(redeemLater),
  redeemAndCloseFirst: Number(redeemAndCloseFirst),
  redeemAndCloseLater: Number(redeemAndCloseLater),
  clientClose: Number(clientClose),
};

// Stated throughput assumption, used only to turn Q into a posting interval.
const TOKENS_PER_QUERY = 256; // N
const CONCURRENT_SESSIONS = 8;
const SESSION_TOKENS_PER_SECOND = 20;

const LIGHT = 100;
const REGULAR = 1_000;
const HEAVY = 10_000;
const base = { tokens: TOKENS_PER_QUERY, redemptions: 1, closer: "server" } as const;
const scenarios: Scenario[] = [
  ...[LIGHT, REGULAR, HEAVY].flatMap((c) =>
    [1_000, 10_000].map((q) => ({ ...base, label: c === LIGHT ? "light" : c === REGULAR ? "regular" : "heavy", servers: 4, queriesPerBatch: q, queriesPerChannel: c })),
  ),
  // Variants of the regular client at Q = 1,000, one parameter changed each.
  { ...base, label: "regular, k = 1", servers: 1, queriesPerBatch: 1_000, queriesPerChannel: REGULAR },
  { ...base, label: "regular, k = 8", servers: 8, queriesPerBatch: 1_000, queriesPerChannel: REGULAR },
  { ...base, label: "regular, R = 10", servers: 4, queriesPerBatch: 1_000, queriesPerChannel: REGULAR, redemptions: 10 },
  { ...base, label: "regular, client closes", servers: 4, queriesPerBatch: 1_000, queriesPerChannel: REGULAR, closer: "client" },
];

// ------------------------------------------------------------------ withheld data on chain (DataRequests)
// Measured on a network of its own (scripts/bench/lib/dataRequestGas.ts: Prague pricing, no block gas
// limit, so that steps too large for a block are priced too). The full table of answers (shipped model
// and hidden 4096; 1, 64, 512 tokens; fp32, fp16) goes to docs/verification.md, "Withheld data on chain".

const DATA_REQUESTS = "Data requests";
{
  const d = await measureDataRequestGas(network);
  record(DATA_REQUESTS, "**requestData**", `receipt of a ${d.cases.length}-receipt batch (proof of ${d.proofLength}); locks the server's stake, takes the bond`, d.request);
  for (const c of d.cases.filter((x) => x.tokens === 1)) {
    record(DATA_REQUESTS, "**postData**", `server answers: one decode step, hidden ${c.hidden}, ${c.encoding} (${fmtInt(c.payloadBytes)} bytes in + out)`, c.gas);
  }
  record(DATA_REQUESTS, "**slashUnanswered**", "after the deadline: two slashes, unlock, failed audit, bond back", d.slash);
  writeDataRequestSection(d);
}

// ------------------------------------------------------------------ output

const sectionOrder = [STAKING, "Model registry", "Commitments", DISPUTES, AUDITS, DATA_REQUESTS, CHANNELS, TICKETS, BASELINE];
const opTable = markdownTable(
  ["Contract", "Operation", "Conditions", "Gas used"],
  sectionOrder.flatMap((section) =>
    rows.filter((r) => r.section === section).map((r) => [section, r.operation, r.conditions, fmtInt(r.gas)]),
  ),
  ["left", "left", "left", "right"],
);

const batchTable = markdownTable(
  ["Receipts per batch", "postBatch gas", "Gas per receipt", "Proof length", "verifyReceipt (view, estimateGas)"],
  batchResults.map((b) => [
    fmtInt(b.receipts),
    fmtInt(b.postGas),
    fmtNum(Number(b.postGas) / b.receipts, b.receipts >= 1_000 ? 2 : 1),
    String(b.proofLength),
    fmtInt(b.verifyGas),
  ]),
  ["right", "right", "right", "right", "right"],
);

const T = TARGET_GAS_PER_QUERY;
const transfer = Number(transferWarm);
const versusTransfers = (total: number, k: number): string => {
  const naive = k * transfer;
  return total <= naive ? `${fmtNum(naive / total, 1)}× cheaper` : `${fmtNum(total / naive, 1)}× dearer`;
};
const fmtDuration = (seconds: number): string => {
  if (seconds < 120) return `${fmtNum(seconds, 0)} s`;
  if (seconds < 7_200) return `${fmtNum(seconds / 60, 0)} min`;
  return `${fmtNum(seconds / 3600, 1)} h`;
};
const postInterval = (s: Scenario): string =>
  fmtDuration(s.queriesPerBatch / serverQueriesPerSecond(CONCURRENT_SESSIONS, SESSION_TOKENS_PER_SECOND, s.tokens));

const results = scenarios.map((s) => ({ s, q: perQuery(s, costs, T) }));
const amortTable = markdownTable(
  ["Client", "k", "Q", "Posts every¹", "C", "R", "Closed by", "Commitments k·post/Q", "Channels k·life/C", "**Total gas / query**", `Gas / token (N = ${TOKENS_PER_QUERY})`, `vs k·transfer (k × ${fmtInt(transfer)})`, `< ${fmtInt(T)}?`, `C needed for < ${fmtInt(T)} gas/query`],
  results.map(({ s, q }) => [
    s.label,
    String(s.servers),
    fmtInt(s.queriesPerBatch),
    postInterval(s),
    fmtInt(s.queriesPerChannel),
    fmtInt(s.redemptions),
    s.closer,
    fmtInt(q.commitments),
    fmtInt(q.channels),
    `**${fmtInt(q.total)}**`,
    fmtNum(q.perToken, 1),
    versusTransfers(q.total, s.servers),
    q.total < T ? "yes" : "no",
    q.minChannelForTarget === undefined ? "none" : fmtInt(q.minChannelForTarget),
  ]),
  ["left", "right", "right", "right", "right", "right", "left", "right", "right", "right", "right", "right", "left", "right"],
);

// ------------------------------------------------------------------ tickets vs channels, per query

const ticketCosts: TicketCosts = {
  fund: Number(ticketGas.fundLater),
  fundFirst: Number(ticketGas.fundFirst),
  fundApproved: Number(ticketGas.fundApproved),
  redeem: Number(ticketGas.redeem),
  exit: Number(ticketGas.unlock + ticketGas.withdraw),
  postBatch: costs.postBatch,
};
/** Money assumptions of the ticket model: stated in the docs section beside the table. */
const TICKET_ASSUMPTIONS: TicketAssumptions = {
  gasPriceGwei: 0.05,
  ethPerEfed: 0.001,
  pricePerTokenWei: PRICE_PER_TOKEN,
  promptTokens: PROMPT_TOKENS,
  decodeSteps: TOKENS_PER_QUERY - PROMPT_TOKENS,
  redemptionsPerFace: 100,
};
const targetFace = targetFaceValueWei(ticketCosts.redeem, TICKET_ASSUMPTIONS);
const ticketBase = { servers: 4, withExit: false, funding: "permit" } as const;
const ticketScenarios: TicketScenario[] = [
  ...[LIGHT, REGULAR, HEAVY].flatMap((c) =>
    [1_000, 10_000].map((q) => ({ ...ticketBase, label: c === LIGHT ? "light" : c === REGULAR ? "regular" : "heavy", queriesPerBatch: q, queriesPerDeposit: c })),
  ),
  { ...ticketBase, label: "light, standing approval", queriesPerBatch: 10_000, queriesPerDeposit: LIGHT, funding: "approved" },
  { ...ticketBase, label: "light, first funding, then exits", queriesPerBatch: 10_000, queriesPerDeposit: LIGHT, withExit: true, funding: "first" },
  { ...ticketBase, label: "regular, k = 8", servers: 8, queriesPerBatch: 10_000, queriesPerDeposit: REGULAR },
];
const ticketResults = ticketScenarios.map((t) => {
  const channel = perQuery({ ...base, label: t.label, servers: t.servers, queriesPerBatch: t.queriesPerBatch, queriesPerChannel: t.queriesPerDeposit }, costs, T);
  return { t, q: ticketPerQuery(t, ticketCosts, TICKET_ASSUMPTIONS), channel };
});
const ticketTable = markdownTable(
  ["Client", "k", "Q", "C", "Channels: total gas / query", "Tickets: fund/C", "exit/C", "k·w·redeem", "k·post/Q", "**Tickets: total gas / query**", "Channels ÷ tickets", `Tickets < ${fmtInt(T)}?`, `Tickets, payment only (no commitments) < ${fmtInt(T)}?`],
  ticketResults.map(({ t, q, channel }) => [
    t.label,
    String(t.servers),
    fmtInt(t.queriesPerBatch),
    fmtInt(t.queriesPerDeposit),
    fmtInt(channel.total),
    fmtInt(q.funding),
    fmtInt(q.exit),
    fmtInt(q.redemptions),
    fmtInt(q.commitments),
    `**${fmtInt(q.total)}**`,
    `${fmtNum(channel.total / q.total, 1)}×`,
    q.total < T ? "yes" : "no",
    q.total - q.commitments < T ? "yes" : "no",
  ]),
  ["left", "right", "right", "right", "right", "right", "right", "right", "right", "right", "right", "left", "left"],
);

// One channel's whole life, per server, and what each choice adds.
const lifeServer = lifecycle(costs, 1, "server");
const lifeClient = lifecycle(costs, 1, "client");
const extraRedeem = lifecycle(costs, 2, "server") - lifeServer;
check(lifecycle(costs, 3, "server") - lifecycle(costs, 2, "server") === costs.redeemLater, "R ≥ 2 adds a later redeem each");
const lifeRows: [string, string, number][] = [
  ["**openWithPermit + redeemAndClose** (the model's default: R = 1, server closes)", "2", lifeServer],
  ["openWithPermit + redeem + closeByServer", "3", costs.open + Number(redeemBeforeClose + closeByServer)],
  ["openWithPermit + redeem + startClose + finishClose (client closes)", "4", lifeClient],
  ["approve + open + redeemAndClose (no permit)", "3", Number(approveOpenLater) + costs.redeemAndCloseFirst],
];
const lifeTable = markdownTable(
  ["One client↔server channel, open to close (client's later channel)", "Transactions", "Gas"],
  [
    ...lifeRows.map(([label, txs, gas]) => [label, txs, fmtInt(gas)]),
    ["each redemption beyond the first (R > 1): a plain redeem", "+1", `+${fmtInt(extraRedeem)}`],
  ],
  ["left", "right", "right"],
);

const naiveTable = markdownTable(
  ["Naive design: one transaction per query per server", "Gas / query / server", `Gas / token (N = ${TOKENS_PER_QUERY})`],
  [
    ["1 ERC20 transfer, recipient already holds EFED", transferWarm],
    ["1 ERC20 transfer, recipient's first EFED", transferFresh],
  ].map(([label, gas]) => [String(label), fmtInt(gas as bigint), fmtNum(Number(gas) / TOKENS_PER_QUERY, 1)]),
  ["left", "right", "right"],
);

// ------------------------------------------------------------------ conclusion

const find = (label: string, q: number): { s: Scenario; q: ReturnType<typeof perQuery> } => {
  const r = results.find((x) => x.s.label === label && x.s.queriesPerBatch === q);
  if (r === undefined) throw new Error(`no scenario ${label} at Q = ${q}`);
  return r;
};
const g = (label: string, q: number): string => fmtInt(find(label, q).q.total);
const minC = (label: string, q: number): string => {
  const m = find(label, q).q.minChannelForTarget;
  return m === undefined ? "no C at all" : `C ≥ ${fmtInt(m)}`;
};
const meets = (label: string, q: number): boolean => find(label, q).q.total < T;
// The conclusion below is prose about the current numbers: fail loudly rather than write it false.
const claims: [boolean, string][] = [
  [meets("heavy", 1_000) && meets("heavy", 10_000), "heavy clients meet the goal at k = 4"],
  [!meets("light", 1_000) && !meets("light", 10_000), "light clients miss it"],
  [!meets("regular", 1_000) && !meets("regular", 10_000), "regular clients at k = 4 miss it"],
  [meets("regular, k = 1", 1_000) && !meets("regular, k = 8", 1_000), "k = 1 meets it, k = 8 misses it"],
  [find("regular, k = 8", 1_000).q.minChannelForTarget === undefined, "k = 8 at Q = 1,000 has no C"],
  [Math.min(find("light", 1_000).q.total, find("light", 10_000).q.total) > 10 * T, "light clients pay over ten times the goal"],
  [results.every(({ s, q }) => q.total < s.servers * transfer), "every row beats one transfer per query per server"],
  [find("regular", 1_000).q.channels > find("regular", 1_000).q.commitments, "channels dominate for a regular client"],
  [find("heavy", 1_000).q.commitments > find("heavy", 1_000).q.channels, "commitments dominate for a heavy client at Q = 1,000"],
];
for (const [ok, what] of claims) check(ok, `conclusion text: ${what} (update the text)`);

const qps = serverQueriesPerSecond(CONCURRENT_SESSIONS, SESSION_TOKENS_PER_SECOND, TOKENS_PER_QUERY);
const r1k = find("regular", 1_000);
const commit4 = (q: number): string => fmtInt(find("heavy", q).q.commitments);
const ratios = results.map(({ s, q }) => (s.servers * transfer) / q.total);
const lights = [find("light", 1_000).q.total, find("light", 10_000).q.total];
// Not a table row: what k = 8 needs when the servers post less often.
const k8q10k = perQuery({ ...base, label: "regular, k = 8", servers: 8, queriesPerBatch: 10_000, queriesPerChannel: REGULAR }, costs, T);
const k8Need = k8q10k.minChannelForTarget;
check(k8Need !== undefined, "conclusion text: k = 8 at Q = 10,000 has a C (update the text)");
const postsOverGoal = (k: number): string => fmtInt(Math.ceil((k * costs.postBatch) / T));
const efed = (v: bigint): string => ethers.formatEther(v).replace(/\.0$/, "");
const ticketRow = (label: string, q: number): (typeof ticketResults)[number] => {
  const r = ticketResults.find((x) => x.t.label === label && x.t.queriesPerBatch === q);
  if (r === undefined) throw new Error(`no ticket scenario ${label} at Q = ${q}`);
  return r;
};
const tg = (label: string, q: number): string => fmtInt(ticketRow(label, q).q.total);
const ticketClaims: [boolean, string][] = [
  [ticketResults.filter((r) => r.t.label !== "heavy").every((r) => r.q.total < r.channel.total), "tickets beat channels for light and regular clients"],
  [ticketResults.filter((r) => r.t.label === "heavy").every((r) => r.q.total > r.channel.total), "channels beat tickets for heavy clients"],
  [ticketRow("light", 10_000).q.total - ticketRow("light", 10_000).q.commitments < T, "a light client's payment part is under the goal"],
  [ticketRow("light", 1_000).q.commitments > 0.8 * T, "commitments alone take 80 % of the goal at Q = 1,000"],
  [ticketRow("light", 10_000).q.total >= T && ticketRow("light, standing approval", 10_000).q.total < T, "light: permit top-up misses the goal, standing approval meets it"],
];
for (const [ok, what] of ticketClaims) check(ok, `ticket section text: ${what} (update the text)`);
const light10k = ticketRow("light", 10_000).q;
const ticketSection = `**Scheme** (Livepeer's, \`contracts/TicketBroker.sol\`, \`protocol/tickets.ts\`). A client funds ONE deposit and
one reserve in \`TicketBroker\`, whatever the number of servers it pays. The server first commits to a
secret random number (its hash); per step the client signs, for each server, a ticket of face value F that
wins with probability p, with F·p exactly what the step owes (price × tokens): F = owed·2^j close to the
target face value and p = 2^-j, so no rounding. A ticket wins when keccak256(ticket hash, the server's
secret) < p·2^256: the client cannot tell winners when it signs, the server cannot choose after. Only
winners come on chain (\`redeemWinningTicket\`, ${fmtInt(ticketCosts.redeem)} gas); a client leaves only through
\`unlock\` and, ${DEVNET_PARAMS.tickets.unlockPeriod / 3600n} h later, \`withdraw\`, so it cannot front-run a redemption.

**Model.** Per query, with k servers, Q queries per commitment post and C queries per funding:

    gas = k·post/Q + fund/C [+ (unlock + withdraw)/C] + k·w·redeem

with fund = ${fmtInt(ticketCosts.fund)} (\`fundWithPermit\`, a later deposit top-up; a client's first funding with its
reserve costs ${fmtInt(ticketCosts.fundFirst)}), unlock + withdraw = ${fmtInt(ticketCosts.exit)}, and w the expected winning tickets per query
per server: w = Σ over the query's steps of owed / F.

**Assumptions, stated plainly.**

- Gas price ${TICKET_ASSUMPTIONS.gasPriceGwei} gwei, 1 EFED = ${TICKET_ASSUMPTIONS.ethPerEfed} ETH (an L2-like chain). A server's price is
  ${efed(PRICE_PER_TOKEN)} EFED per token; a query is one prefill of ${TICKET_ASSUMPTIONS.promptTokens} tokens and ${TICKET_ASSUMPTIONS.decodeSteps} one-token decode steps
  (N = ${TOKENS_PER_QUERY}), so it is worth ${efed(PRICE_PER_TOKEN * BigInt(TOKENS_PER_QUERY))} EFED to each server; one ticket per step and server.
- Target face value = ${TICKET_ASSUMPTIONS.redemptionsPerFace} × one redemption's cost in tokens (Livepeer's rule) = ${TICKET_ASSUMPTIONS.redemptionsPerFace} × ${fmtInt(ticketCosts.redeem)} gas ×
  ${TICKET_ASSUMPTIONS.gasPriceGwei} gwei = ${efed(targetFace)} EFED. The prefill's ticket then has F = ${efed(ticketTerms(PRICE_PER_TOKEN * BigInt(TICKET_ASSUMPTIONS.promptTokens), targetFace).faceValue)} EFED,
  p = 2^-${Math.log2(Number(2n ** 256n / ticketTerms(PRICE_PER_TOKEN * BigInt(TICKET_ASSUMPTIONS.promptTokens), targetFace).winProb))}; a decode step's F = ${efed(ticketTerms(PRICE_PER_TOKEN, targetFace).faceValue)} EFED, p = 2^-${Math.log2(Number(2n ** 256n / ticketTerms(PRICE_PER_TOKEN, targetFace).winProb))}; w = ${fmtNum(light10k.winnersPerQuery * 1e4, 2)}·10⁻⁴.
- So redemptions spend about 1/${TICKET_ASSUMPTIONS.redemptionsPerFace} of what is paid on gas, whatever a redemption costs: k·w·redeem
  depends on the price of gas and of the token, not on C. A dearer gas price raises F and lowers p in
  proportion (fewer, larger winners).
- The servers' and the client's variance: a server is paid F per winner, so over few queries it may get
  more or less than it earned; it chooses F (through its price and the gas price) and redeems at once.
- C is the number of queries one funding pays for. A deposit is not tied to a server, so a light client's
  100 queries may go to any servers; its deposit only has to cover a few face values. Commitments as in
  section 2. Not counted: the reserve's top-ups, approvals (permit), staking.
- Channel column: section 2's figure for the same k, Q and C (C queries per channel, R = 1, server closes).

${ticketTable}

**What wins.** Tickets for light and regular clients: ${tg("light", 10_000)} gas per query for a light client at Q = 10,000
(${fmtNum(ticketRow("light", 10_000).channel.total / light10k.total, 1)}× less than channels), of which the payment (funding and redemptions) is ${fmtInt(light10k.total - light10k.commitments)}. A client that approved the
broker once without limit funds with a plain \`fund\` (${fmtInt(ticketCosts.fundApproved)} gas instead of ${fmtInt(ticketCosts.fund)}) and pays
${tg("light, standing approval", 10_000)} gas per query: under the goal of ${fmtInt(T)}. That approval is safe to leave standing because the broker
only ever pulls tokens from the caller of \`fund\`; it is one transaction per wallet, not counted here (like
staking). Channels still win for heavy clients: over ${fmtInt(HEAVY)} queries a channel's open and close cost less per
query than the redemptions' 1 % of value. No payment scheme meets the goal at Q = 1,000: the servers'
commitment posts alone take ${fmtInt(ticketRow("light", 1_000).q.commitments)} gas per query there (${fmtInt(light10k.commitments)} at Q = 10,000). A light client that
also takes its remainder back (unlock and withdraw) after its first funding pays ${tg("light, first funding, then exits", 10_000)}.`;

const conclusion = `## Conclusion

The goal is an amortized on-chain cost **below ${fmtInt(T)} gas per paid query**. Measured against the
model of section 2 (k servers per query; each server posts one root per Q queries it serves; each
client↔server channel lives C queries and ends with one \`redeemAndClose\`):

- **It holds for heavy clients.** With k = 4 servers and C = ${fmtInt(HEAVY)} queries per channel, a query costs
  ${g("heavy", 1_000)} gas at Q = 1,000 and ${g("heavy", 10_000)} gas at Q = 10,000. It also holds for a regular client
  (C = ${fmtInt(REGULAR)}) behind a single server (k = 1: ${g("regular, k = 1", 1_000)} gas).
- **It does not hold for light or regular clients on a 4-server pipeline.** A light client (C = ${fmtInt(LIGHT)})
  costs ${fmtInt(Math.min(...lights))} to ${fmtInt(Math.max(...lights))} gas per query, over ten times the goal; a regular client (C = ${fmtInt(REGULAR)})
  costs ${g("regular", 1_000)} at Q = 1,000 and ${g("regular", 10_000)} at Q = 10,000. With k = 4 the goal needs
  ${minC("regular", 1_000)} queries per channel when servers post every ${postInterval(r1k.s)} (Q = 1,000), ${minC("regular", 10_000)}
  when they post every ${postInterval(find("regular", 10_000).s)} (Q = 10,000). With k = 8 no C is enough at Q = 1,000, and at Q = 10,000
  it takes C ≥ ${fmtInt(k8Need)}. Posting less often is not free: receipts can only be audited on chain
  once posted, and a post every ${postInterval(find("regular", 10_000).s)} is longer than the devnet's ${DEVNET_PARAMS.timing.challengeWindow / 3600n} h challenge window.
- **For light and regular clients the channel lifecycle dominates.** One channel costs ${fmtInt(lifeServer)} gas per server
  (openWithPermit ${fmtInt(costs.open)} + redeemAndClose ${fmtInt(costs.redeemAndCloseFirst)}), paid k times and spread over only C
  queries: ${fmtInt(find("light", 1_000).q.channels)} gas per query at C = ${fmtInt(LIGHT)}, ${fmtInt(r1k.q.channels)} at C = ${fmtInt(REGULAR)}. A commitment post costs
  ${fmtInt(costs.postBatch)} gas however many receipts it covers, spread over every query the server serves,
  whoever the client: k·post/Q = ${commit4(1_000)} gas at Q = 1,000 and ${commit4(10_000)} at Q = 10,000 for k = 4. Commitments
  dominate only for heavy clients with frequent posts. On their own they use up the whole budget
  unless a server serves at least k·post/${fmtInt(T)} queries between two posts (${postsOverGoal(4)} for k = 4, ${postsOverGoal(8)} for
  k = 8): that is why k = 8 at Q = 1,000 has no answer.
- Redeeming more often or letting the client close costs more: R = 10 redemptions per channel raise
  the regular client's ${g("regular", 1_000)} gas to ${g("regular, R = 10", 1_000)}; a client-driven close (startClose + finishClose
  after a redeem) to ${g("regular, client closes", 1_000)}.
- Every row is ${fmtNum(Math.min(...ratios), 0)} to ${fmtNum(Math.max(...ratios), 0)} times cheaper than paying each server one ERC20 transfer per
  query, and, unlike those transfers, it also commits the servers to their work.

So the goal is met when clients keep a channel open for thousands of queries (more with longer
pipelines), and missed for occasional users, whose cost is almost all channel open and close.
**Probabilistic tickets** (section 3: one client deposit in \`TicketBroker\` shared by all servers, only
winning tickets redeemed) remove the channel lifecycle: a light client at k = 4 pays ${tg("light", 10_000)} gas per query
instead of ${fmtInt(ticketRow("light", 10_000).channel.total)} (Q = 10,000; ${tg("light, standing approval", 10_000)} when it approved the broker once), a regular client ${tg("regular", 10_000)} instead of ${fmtInt(ticketRow("regular", 10_000).channel.total)}. Heavy clients still do
better with channels: tickets are the cheaper way to pay below a few thousand queries per client, channels above.

Not counted anywhere on this page: staking and registration, top-ups, audits and disputes, withdrawals
(see the assumptions in section 2). Gas is not money: the price per gas depends on the chain the
protocol is deployed to.`;

const compiler = hre.config.solidity.profiles["default"]?.compilers[0];
const optimizer = (compiler?.settings as { optimizer?: { enabled?: boolean; runs?: number } } | undefined)?.optimizer;
const evmVersion = (compiler?.settings as { evmVersion?: string } | undefined)?.evmVersion ?? "default";
const hardfork = (connection.networkConfig as { hardfork?: string }).hardfork ?? "default";
const env = [
  `- Compiler: solc ${compiler?.version ?? "?"}, optimizer ${optimizer?.enabled === true ? `on (${optimizer.runs ?? "?"} runs)` : "off"}, evmVersion \`${evmVersion}\`.`,
  `- Chain: Hardhat's in-process EDR network (\`${connection.networkName}\`, chain id ${chainId}, hardfork \`${hardfork}\`).`,
  `- Protocol parameters: \`DEVNET_PARAMS\` (scripts/lib/deployProtocol.ts): protocol fee ${DEVNET_PARAMS.feeBps} bps (${Number(DEVNET_PARAMS.feeBps) / 100} %), close timeout ${DEVNET_PARAMS.closeTimeoutSeconds / 3600n} h, server stake ${efed(DEVNET_PARAMS.stake.serverBaseStake)} + ${efed(DEVNET_PARAMS.stake.serverStakePerLayer)}/layer EFED, verifier stake ${efed(DEVNET_PARAMS.stake.verifierMinStake)} EFED.`,
].join("\n");

const doc = `# Gas benchmark

<!-- Generated by \`EFED_WRITE_DOCS=1 npm run bench:gas\` (scripts/bench/gas.ts). Do not edit by hand: re-run the script. -->

This page is written by \`EFED_WRITE_DOCS=1 npm run bench:gas\`. The script deploys the whole protocol on Hardhat's
in-process EDR network, performs every on-chain operation of a server's, a verifier's and a client's
life, reports the \`gasUsed\` of each transaction receipt, and derives from them the on-chain gas per
paid query under the stated assumptions of section 2.

${conclusion}

## Method

Commitment batches hold real receipts
(built with \`protocol/receipt.ts\`, one prefill step of ${PROMPT_TOKENS} prompt tokens then decode steps of one token,
${STEPS_PER_SESSION} steps per session) under a real Merkle root (\`protocol/merkle.ts\`); the benchmark checks
on chain that a proof verifies, that a tampered receipt does not, and that the contract's receipt
chain, its EIP-712 digest and the signer it recovers agree with ethers' for a chain the server signs
over the audited receipt's session. Signing happens off chain (one signature per session here), and
no contract takes a signature as evidence: a receipt is evidence once it is under a root its server
posted.

Gas is a property of the bytecode, the hardfork's pricing and the chain state, not of the machine:
re-running the script anywhere gives the same numbers. They change when the contracts, the compiler
settings or the hardfork change. What gas costs in money depends on the chain the protocol is deployed
to (its gas price and, on a rollup, its data fee), which is outside this page.

${env}

All figures include the 21,000 gas every transaction pays and its calldata. To avoid charging
one-time global writes to the rows, the script first lets another server stake, register and post a
batch, and another client open a channel that is redeemed once, as on a live network.

## 1. Gas per operation

Bold rows are the user-facing actions (including the approval a plain \`deposit\`/\`open\` needs).

${opTable}

### Commitment batches and receipt proofs

A batch of B receipts is one \`postBatch\` whatever B (the root is 32 bytes), so the cost per receipt
falls as 1/B. Rows below are the same server's later batches (its first batch, above, costs more because it
creates the server's batch list). \`verifyReceipt\` is a view, used by verifiers and disputes; its
cost grows with the proof length, log2(B), and is paid only if a receipt is ever checked on chain.
The figure is \`estimateGas\` of a transaction calling it (so it includes the 21,000 base and
calldata) for the deepest leaf. No contract checks a receipt's signature: a receipt under a root its
server posted is the server's own attestation. Clients hold the server's signed receipt chains off
chain (one EIP-712 \`ReceiptChain\` signature every few steps and at session close); recovering one's
signer on chain (\`receiptChainSigner\`, a view kept so off-chain code can be tested against it)
estimates at ${fmtInt(receiptChainSignerGas)} gas.

${batchTable}

### Disputes

A dispute is on chain only when a verifier challenges (rare in an honest network), so it is not part
of the per-query cost below. One dispute with a committee of ${DEVNET_PARAMS.disputes.committeeSize} costs
${fmtInt(disputeGas.open)} to open (Merkle proof checked against the server's posted root, its stake locked under
the dispute, the bond taken), ${fmtInt(disputeGas.draw)} to draw the committee (each member's stake locked),
${fmtInt(disputeGas.commit)} per committed vote, ${fmtInt(disputeGas.reveal)} per revealed vote and
${fmtInt(disputeGas.settle)} to settle with the server at fault (the most transfers a settlement makes).
A challenge opened while other disputes hold all of the server's stake locks nothing and costs
${fmtInt(disputeGas.openUnlocked)}.

### Audit ledger

A verifier records its passed audits of a batch in one \`recordPasses\` transaction: per pass a Merkle
proof, the on-chain sample check and a dispute lookup; per record the trust credit, the reward and one
storage slot for the record (the leaves themselves are in the event). One pass costs
${fmtInt(auditGas.first)} (the batch's first record, which also keeps its sample seed), 10 passes
${fmtInt(auditGas.ten)}, and all ${audited.sampled} receipts sampled at 1 % of a 10,000-receipt batch
${fmtInt(auditGas.all)}: about ${fmtInt((auditGas.all - auditGas.ten) / BigInt(audited.sampled - 10))} gas per further pass, most of it
the proof's siblings in calldata (a multiproof would share the upper levels). Slashing a pass that a
dispute showed false costs ${fmtInt(auditGas.slash)}.

## 2. Amortized on-chain gas per paid query

**Model.** A query is one generation of N tokens through a pipeline of k servers, each with its own
channel from the client. Two costs are spread over queries, both paid once per server:

- **Commitments.** A server posts one Merkle root of its receipts per interval. \`postBatch\` gas
  does not depend on how many receipts are under the root (table above), so what matters is Q, the
  queries the server serves between two posts, from all its clients.
- **Channel lifecycle.** Per client and server: \`openWithPermit\` (the normal client path), R − 1 plain
  \`redeem\`s, and a final \`redeemAndClose\` by the server; the channel serves C queries.

Per query:

    gas = k·post/Q + k·life/C,    life = open + (R − 1)·redeem + redeemAndClose

with the measured costs post = ${fmtInt(costs.postBatch)} (steady state, largest of the three batch sizes), open =
${fmtInt(costs.open)} (\`openWithPermit\`, client's later channel and later permit), redeemAndClose = ${fmtInt(costs.redeemAndCloseFirst)} on a
never-redeemed channel (R = 1). When R > 1, the first redeem is a channel's first redemption
(${fmtInt(costs.redeemFirst)}), the further ones cost ${fmtInt(costs.redeemLater)}, and the final redeemAndClose ${fmtInt(costs.redeemAndCloseLater)}; the
model uses each where it applies. If the client closes instead, life = open + R·redeem + startClose +
finishClose (${fmtInt(costs.clientClose)} for the close). One channel's life:

${lifeTable}

**Assumptions, stated plainly.**

- Counted: commitment posts, channel open, redemptions and close.
- Not counted: staking and registration (one-off per operator), top-ups (assumed the opening deposit
  covers the C queries), audits and disputes (on chain only when a verifier challenges, which in an
  honest network is rare), withdrawals, variant registration.
- R = 1 (one redemption, at the end) is safe for the server because the deposit is locked: if the
  client starts a close, the server can still redeem during the ${DEVNET_PARAMS.closeTimeoutSeconds / 3600n} h close timeout, provided it
  watches the chain.
- ¹ Posting interval, an assumption for scale, not a measurement: one server serving
  ${CONCURRENT_SESSIONS} concurrent sessions at ${SESSION_TOKENS_PER_SECOND} tokens/s each, N = ${TOKENS_PER_QUERY} tokens per query, completes
  ${CONCURRENT_SESSIONS} × ${SESSION_TOKENS_PER_SECOND} / ${TOKENS_PER_QUERY} = ${fmtNum(qps, 3)} queries/s, so Q queries take Q / ${fmtNum(qps, 3)} s. Every server of the
  pipeline computes every token (its own layers), so this does not depend on k. Receipts can only be
  audited on chain once posted: compare the interval with the challenge window
  (${DEVNET_PARAMS.timing.challengeWindow / 3600n} h on the devnet); the contract does not enforce a maximum interval.
- N enters only the per-token column and the posting interval.
- Naive baseline: one ERC20 transfer per query to each of the k servers (k × ${fmtInt(transfer)}, measured
  above), which commits to no work at all; so the comparison flatters the naive design.
- The last column is the smallest C that brings the total under ${fmtInt(T)} gas with the row's other
  parameters: C > k·life / (${fmtInt(T)} − k·post/Q), "none" if the commitment part alone reaches ${fmtInt(T)}.
- Rows: light, regular and heavy clients (C = ${fmtInt(LIGHT)}, ${fmtInt(REGULAR)}, ${fmtInt(HEAVY)}) with k = 4 at Q = 1,000 and 10,000;
  then the regular client at Q = 1,000 with one parameter changed: k = 1, k = 8, R = 10, and the
  client closing the channel instead of the server.

${amortTable}

${naiveTable}

\`post\` is mostly storage: \`postBatch\` writes six fresh slots (four for the \`Batch\` struct: server,
registration, time range, challenge deadline, layer range, the stake behind it, and root; one for the
server's batch-id list; one for the server's root-used flag), about ${fmtInt(6 * 22_100)} of its ${fmtInt(costs.postBatch)} gas, plus two
reads of the server's registration and stake in Staking and one write there (how long its stake stays
slashable: no withdrawal before the batch's challenge deadline).

\`open\` checks \`Staking.isEligible\` (collateral free of dispute locks, probation over, trust at least θ,
read from TrustScores), and every redemption records the payment in TrustScores as paid work, the only
credit besides audits: these account for most of the difference between \`open\`/\`redeem\` and a plain
ERC20 transfer.
`;

const outPath = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "docs", "gas.md");
if (WRITE_DOCS) {
  await mkdir(dirname(outPath), { recursive: true });
  await writeFile(outPath, doc);
}
writeDocSections(outPath, "Gas benchmark", { "3. Probabilistic tickets vs channels": ticketSection });

console.log("## Gas per operation\n");
console.log(opTable);
console.log("\n## Commitment batches and receipt proofs\n");
console.log(batchTable);
console.log("\n## Channel lifecycle\n");
console.log(lifeTable);
console.log("\n## Amortized on-chain gas per paid query\n");
console.log(amortTable);
console.log();
console.log(naiveTable);
console.log("\n## Probabilistic tickets vs channels: gas per paid query\n");
console.log(ticketTable);
console.log(
  WRITE_DOCS
    ? `\nWrote ${outPath} in ${fmtNum((performance.now() - startedAt) / 1000, 1)} s.`
    : `\n${outPath} not written (EFED_WRITE_DOCS=1 npm run bench:gas records it); ${fmtNum((performance.now() - startedAt) / 1000, 1)} s.`,
);
