import { describe, expect, it } from "vitest";
import { isPublicAddress, resolvePublicAddress } from "../../../node/server/addressPolicy.js";

describe("address policy for next hops", () => {
  it("calls public only what is routable on the internet, IPv6 forms of private IPv4 included", () => {
    const publicOnes = ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"];
    const refused = [
      "127.0.0.1", "10.1.2.3", "100.64.1.1", "169.254.169.254", "172.31.0.1", "192.168.1.1", "224.0.0.1", "255.255.255.255", "0.0.0.0",
      "198.18.0.1", "192.0.2.7", "::1", "::", "fe80::1", "fd00::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:7f00:1", "64:ff9b::a00:1",
      "2002:7f00:1::1", "2001:db8::1", "2001:0:1::1", "not an address",
    ];
    expect(publicOnes.filter((a) => !isPublicAddress(a))).toEqual([]);
    expect(refused.filter((a) => isPublicAddress(a))).toEqual([]);
  });

  it("resolves names first and refuses when any address is not public, unless private ones are allowed", async () => {
    await expect(resolvePublicAddress("localhost", false)).rejects.toThrow(/^localhost resolves to (127\.0\.0\.1|::1), not a public address$/);
    await expect(resolvePublicAddress("[::1]", false)).rejects.toThrow("[::1] resolves to ::1, not a public address");
    expect(["127.0.0.1", "::1"]).toContain(await resolvePublicAddress("localhost", true));
    expect(await resolvePublicAddress("127.0.0.1", true)).toBe("127.0.0.1");
    expect(await resolvePublicAddress("8.8.8.8", false)).toBe("8.8.8.8");
  });
});
