import { ZeroHash, getAddress, id, type BaseContract, type ContractTransactionResponse } from "ethers";
import type { Protocol } from "./deployProtocol.js";
import type { Minter } from "./deployParams.js";

/** Roles an admin (multisig, timelock) takes over; any other role stays with the contract it was wired to. */
const GOVERNANCE_ROLES: readonly string[] = ["DEFAULT_ADMIN_ROLE", "GOVERNANCE_ROLE"];
const REGISTRAR_ROLE = "REGISTRAR_ROLE";

interface AccessControlled {
  hasRole(role: string, account: string): Promise<boolean>;
  grantRole(role: string, account: string): Promise<ContractTransactionResponse>;
  renounceRole(role: string, account: string): Promise<ContractTransactionResponse>;
}

/** One role the handoff moved: on which contract, which role, to whom. */
export interface RoleMove {
  contract: string;
  role: string;
  to: string;
}

/**
 * Gives every governance power the deployer holds to `admin` and renounces the deployer's copy:
 * DEFAULT_ADMIN_ROLE and GOVERNANCE_ROLE on every access-controlled contract, REGISTRAR_ROLE to
 * `registrar`. Works over whatever contracts `protocol` holds, so contracts added to deployProtocol
 * are handed over too. Grants come before renounces and the admin role is renounced last, so an
 * interrupted handoff never leaves a contract without an admin. Each transaction is awaited.
 */
export async function handOverRoles(protocol: Protocol, deployer: string, admin: string, registrar: string): Promise<RoleMove[]> {
  const moves: RoleMove[] = [];
  for (const [name, contract] of Object.entries(protocol) as [string, BaseContract][]) {
    if (contract.interface.getFunction("hasRole") === null) continue;
    const ac = contract as unknown as AccessControlled;
    const roles = [REGISTRAR_ROLE, ...GOVERNANCE_ROLES.slice().reverse()].filter((r) => r === "DEFAULT_ADMIN_ROLE" || contract.interface.getFunction(r) !== null);
    const held: string[] = [];
    for (const role of roles) if (await ac.hasRole(roleHash(role), deployer)) held.push(role);
    for (const role of held) {
      const to = role === REGISTRAR_ROLE ? registrar : admin;
      if (getAddress(to) === getAddress(deployer)) continue;
      await (await ac.grantRole(roleHash(role), to)).wait();
      moves.push({ contract: name, role, to });
    }
    // DEFAULT_ADMIN_ROLE is last in `held`: the deployer can still grant until it renounces it
    for (const role of held) {
      const to = role === REGISTRAR_ROLE ? registrar : admin;
      if (getAddress(to) === getAddress(deployer)) continue;
      await (await ac.renounceRole(roleHash(role), deployer)).wait();
    }
  }
  return moves;
}

/**
 * Mints the allocations, then settles who may mint from now on: "deployer" keeps the deployer's
 * unlimited mint (a devnet faucet), "admin" transfers ownership to `admin`, "none" renounces it so
 * the supply is fixed at what was minted.
 */
export async function settleToken(
  token: Protocol["token"],
  allocations: readonly { to: string; amountWei: bigint }[],
  minter: Minter,
  admin: string,
): Promise<string> {
  for (const a of allocations) await (await token.mint(a.to, a.amountWei)).wait();
  if (minter === "admin") await (await token.transferOwnership(admin)).wait();
  if (minter === "none") await (await token.renounceOwnership()).wait();
  return await token.owner();
}

/** Names of the roles `account` holds on each access-controlled contract of `protocol` (for the deploy's report and tests). */
export async function rolesHeld(protocol: Protocol, account: string): Promise<string[]> {
  const held: string[] = [];
  for (const [name, contract] of Object.entries(protocol) as [string, BaseContract][]) {
    if (contract.interface.getFunction("hasRole") === null) continue;
    const names: string[] = ["DEFAULT_ADMIN_ROLE"];
    contract.interface.forEachFunction((f) => {
      if (f.name.endsWith("_ROLE") && f.inputs.length === 0 && f.name !== "DEFAULT_ADMIN_ROLE") names.push(f.name);
    });
    for (const role of names) if (await (contract as unknown as AccessControlled).hasRole(roleHash(role), account)) held.push(`${name}.${role}`);
  }
  return held;
}

function roleHash(role: string): string {
  return role === "DEFAULT_ADMIN_ROLE" ? ZeroHash : id(role);
}
