import { id } from "ethers";
import { ContractCallError, contractCall } from "../../protocol/contractErrors.js";
import { InvalidArgumentError } from "../../protocol/errors.js";
import type { OperatorChain } from "./operatorChain.js";

/**
 * Registers a model variant after checking what the registry would refuse: the key holds
 * REGISTRAR_ROLE, the URI's length, and whether the id is taken. Registering the same variant with
 * the same layer count again is not an error ("already"); with another layer count, or retired, it is.
 */
export async function registerVariant(
  c: OperatorChain,
  v: { variantId: string; numLayers: number; manifestURI: string },
): Promise<"registered" | "already"> {
  const [isRegistrar, known] = await Promise.all([
    c.registry.hasRole(id("REGISTRAR_ROLE"), c.address),
    contractCall("reading the variant", () => c.registry.variant(v.variantId)).catch((err: unknown) => {
      if (err instanceof ContractCallError && err.errorName === "RegistryUnknownVariant") return undefined;
      throw err;
    }),
  ]);
  if (known !== undefined) {
    if (known.retired) throw new InvalidArgumentError(`variant ${v.variantId} is registered but retired on chain ${c.chainId}; a retired variant cannot come back`);
    if (Number(known.numLayers) !== v.numLayers) {
      throw new InvalidArgumentError(`variant ${v.variantId} is registered with ${known.numLayers} layers, the model directory has ${v.numLayers}`);
    }
    return "already";
  }
  if (!isRegistrar) {
    throw new InvalidArgumentError(
      `${c.address} does not hold the registry's REGISTRAR_ROLE on chain ${c.chainId}: ask the registrar named at deploy (npm run deploy --registrar) to register it, or use that key`,
    );
  }
  const maxUri = Number(await c.registry.MAX_URI_LENGTH());
  const uriBytes = new TextEncoder().encode(v.manifestURI).length;
  if (uriBytes === 0 || uriBytes > maxUri) throw new InvalidArgumentError(`the manifest URI is ${uriBytes} bytes long; it must be 1 to ${maxUri} bytes`);
  await contractCall(`registering variant ${v.variantId}`, async () => (await c.registry.registerVariant(v.variantId, v.numLayers, v.manifestURI)).wait());
  return "registered";
}
