import { Wallet, type HDNodeWallet } from "ethers";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ModelDirectory } from "../../../engine/model/modelDir.js";
import { signAuth } from "../../../protocol/fetchAuth.js";
import { ErrorCode, MessageType, encodeMessage } from "../../../protocol/wire.js";
import { randomModel, scratchDir } from "../../engine/helpers.js";
import { RawPeer } from "../../support/rawPeer.js";
import { startServer, type RunningServer } from "../support.js";

// docs/threat-model.md, row 12: verifier impersonation.
const scratch = scratchDir();
let model: ModelDirectory;
const servers: RunningServer[] = [];
const peers: RawPeer[] = [];

beforeAll(() => {
  model = randomModel(scratch.dir, "threat", { max_position_embeddings: 64 });
});
afterEach(async () => {
  for (const p of peers.splice(0)) p.close();
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});
afterAll(() => scratch.cleanup());

async function peer(url: string): Promise<RawPeer> {
  const p = await RawPeer.open(url);
  peers.push(p);
  return p;
}

describe("threat model: verifier impersonation", () => {
  it("a stranger claiming a registered verifier's address with its own key is refused, and gets no batch listing", async () => {
    const verifier = Wallet.createRandom();
    const stranger = Wallet.createRandom();
    const s = await startServer(model, 0, model.config.numLayers, scratch.dir, {}, undefined, undefined, {}, {
      isVerifier: (address) => Promise.resolve(address === verifier.address),
    });
    servers.push(s);
    const authenticate = (p: RawPeer, signer: HDNodeWallet) =>
      p.send(
        encodeMessage({
          type: MessageType.Authenticate,
          requestId: 1,
          address: verifier.address,
          signature: signAuth(signer.signingKey, 31337n, s.wallet.address, p.info.challenge),
        }),
      );
    const listBatch = (p: RawPeer) => p.send(encodeMessage({ type: MessageType.FetchBatch, requestId: 2, batchId: 0n, offset: 0, limit: 10 }));

    const impostor = await peer(s.server.url);
    expect(await authenticate(impostor, stranger)).toMatchObject({
      type: MessageType.Error,
      code: ErrorCode.Forbidden,
      message: expect.stringContaining(`the signature is not ${verifier.address}'s over this connection's challenge`),
    });
    await impostor.whenClosed();
    expect([impostor.closeCode, impostor.closeReason]).toEqual([1008, "authentication failed"]);

    const unauthenticated = await peer(s.server.url);
    expect(await listBatch(unauthenticated)).toMatchObject({
      type: MessageType.Error,
      code: ErrorCode.Forbidden,
      message: expect.stringContaining("a batch's receipts are listed only to a connection authenticated as a registered verifier"),
    });

    const real = await peer(s.server.url);
    expect(await authenticate(real, verifier)).toMatchObject({ type: MessageType.Authenticated, address: verifier.address });
    expect(await listBatch(real)).toMatchObject({ type: MessageType.Error, code: ErrorCode.NotFound, message: expect.stringContaining("no posted batch 0") });
  });
});
