import { describe, expect, it } from "vitest";
import { KJV } from "./support/shippedModel.js";
import { TextTokenizer } from "../../engine/model/tokenizer.js";
import { StopMatcher } from "../../client/streamStop.js";
import { TextStream } from "../../client/streamText.js";


describe("TextStream", () => {
  const tokenizer = TextTokenizer.load(KJV);

  it("releases whole characters only, and in all the same text as decoding every token at once", () => {
    const text = "And God said, 🙂 naïve 中文 — Let there be light.";
    const ids = tokenizer.encode(text, { addSpecialTokens: false });
    const stream = new TextStream(tokenizer);
    const pieces = ids.map((id) => stream.push(id));
    pieces.push(stream.flush());
    expect(pieces.join("")).toBe(text);
    expect(pieces.join("")).toBe(tokenizer.decode(ids));
    expect(pieces.some((p) => p.includes("\uFFFD"))).toBe(false);
    // the emoji's four bytes are byte tokens here: the first three release nothing, the fourth the emoji
    const at = pieces.findIndex((p) => p.includes("🙂"));
    expect(pieces.slice(at - 3, at)).toEqual(["", "", ""]);
    expect(pieces[at]).toBe("🙂");
    expect(pieces.slice(0, -1).filter((p) => p === "").length).toBe(3 + 1 + 2 + 2 + 2); // 🙂, ï, 中, 文, —
  });

  it("keeps the spaces that a decoder would drop at the start of a lone token", () => {
    const ids = tokenizer.encode(" of the king", { addSpecialTokens: false });
    const stream = new TextStream(tokenizer);
    expect([...ids.map((id) => stream.push(id)), stream.flush()].join("")).toBe(" of the king");
  });

  it("leaves out special tokens and releases an unfinished character at the end as U+FFFD", () => {
    const stream = new TextStream(tokenizer);
    const emoji = tokenizer.encode("🙂", { addSpecialTokens: false });
    const pieces = [stream.push(1), ...emoji.slice(0, -1).map((id) => stream.push(id)), stream.flush()];
    expect(pieces.slice(0, -1).join("")).toBe("");
    expect(pieces.at(-1)).toMatch(/^\uFFFD+$/);
  });
});

describe("StopMatcher", () => {
  it("finds a stop string split across pieces and releases none of it", () => {
    const m = new StopMatcher(["world"]);
    expect([m.push("Hello wo"), m.push("rl"), m.push("d! and more")]).toEqual(["Hello ", "", ""]);
    expect(m.done).toBe(true);
    expect(m.push("later")).toBe("");
    expect(m.flush()).toBe("");
  });

  it("releases held text once it cannot start a stop string, and the rest at the end", () => {
    const m = new StopMatcher(["cd", "xyz"]);
    expect(m.push("ab")).toBe("ab");
    expect(m.push("c")).toBe("");
    expect(m.push("e x")).toBe("ce ");
    expect(m.push("y")).toBe("");
    expect(m.done).toBe(false);
    expect(m.flush()).toBe("xy");
  });

  it("stops at the earliest of several stop strings", () => {
    const m = new StopMatcher(["bar", "o b"]);
    expect(m.push("foo bar")).toBe("fo");
    expect(m.done).toBe(true);
  });

  it("refuses an empty stop string", () => {
    expect(() => new StopMatcher(["x", ""])).toThrow("a stop string is empty");
  });
});
