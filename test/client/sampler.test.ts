import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../protocol/errors.js";
import { Sampler, argmax } from "../../client/sampler.js";

const logits = new Float32Array([1.0, 3.0, 2.5, -1.0, 3.0, 0.5]);

describe("Sampler", () => {
  it("greedy picks the largest logit, the lowest id on ties", () => {
    expect(new Sampler({ temperature: 0 }).sample(logits, [])).toBe(1);
    expect(argmax([2, 5, 5, 1])).toBe(1);
  });

  it("repetition penalty divides positive and multiplies negative logits of seen tokens", () => {
    // token 1 (3.0) and 4 (3.0) tie; penalising 1 by 2 leaves 4 (3.0) > 2 (2.5) > 1 (1.5)
    expect(new Sampler({ temperature: 0, repetitionPenalty: 2 }).sample(logits, [1, 1])).toBe(4);
    // penalising 1 and 4 by 1.5 leaves 2 (2.5) above both (2.0)
    expect(new Sampler({ temperature: 0, repetitionPenalty: 1.5 }).sample(logits, [1, 4])).toBe(2);
    // a negative logit gets more negative: -1 * 10 = -10, never chosen by greedy anyway; top-k 1 still 1
    expect(new Sampler({ temperature: 0, repetitionPenalty: 10 }).sample(new Float32Array([-1, -2]), [0])).toBe(1);
  });

  it("is deterministic for a seed and differs across seeds", () => {
    const draw = (seed: number) => {
      const s = new Sampler({ temperature: 1, seed });
      return Array.from({ length: 40 }, () => s.sample(logits, []));
    };
    expect(draw(5)).toEqual(draw(5));
    expect(draw(5)).not.toEqual(draw(6));
  });

  it("top-k 1 and a tiny top-p reduce to greedy", () => {
    for (let seed = 0; seed < 20; seed++) {
      expect(new Sampler({ temperature: 2, topK: 1, seed }).sample(logits, [])).toBe(1);
      expect(new Sampler({ temperature: 2, topP: 1e-6, seed }).sample(logits, [])).toBe(1);
    }
  });

  it("top-k 3 only ever returns the three best tokens, with frequencies near their probabilities", () => {
    const s = new Sampler({ temperature: 1, topK: 3, seed: 11 });
    const counts = new Map<number, number>();
    const N = 20_000;
    for (let i = 0; i < N; i++) {
      const t = s.sample(logits, []);
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual([1, 2, 4]);
    const z = 2 * Math.exp(3) + Math.exp(2.5);
    expect(counts.get(2)! / N).toBeCloseTo(Math.exp(2.5) / z, 1);
  });

  it("rejects bad options with a message naming the value", () => {
    expect(() => new Sampler({ temperature: -1 })).toThrow(new InvalidArgumentError("temperature must be a finite number >= 0, got -1"));
    expect(() => new Sampler({ temperature: 1, topP: 0 })).toThrow("top-p must be in (0, 1], got 0");
    expect(() => new Sampler({ temperature: 1, topK: 1.5 })).toThrow("top-k must be an integer >= 0, got 1.5");
    expect(() => new Sampler({ temperature: 1, repetitionPenalty: 0 })).toThrow("repetition penalty must be a positive number, got 0");
  });
});
