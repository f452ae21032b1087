import { spawn } from "node:child_process";
import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { KJV } from "./support/shippedModel.js";
import { EFED_BIN, stopProcess } from "../support/efedProcess.js";


describe("efed gateway", () => {
  it("listens on a free port, serves the model under the directory's name, and exits 0 on SIGTERM", async () => {
    const child = spawn(process.execPath, [EFED_BIN, "gateway", "--model", KJV, "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    try {
      const listening = await new Promise<{ url: string; model: string; covered: boolean }>((resolve, reject) => {
        let out = "";
        child.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          const line = out.split("\n").find((l) => l.includes('"listening"'));
          if (line !== undefined) resolve(JSON.parse(line) as { url: string; model: string; covered: boolean });
        });
        child.once("exit", (code) => reject(new Error(`efed gateway exited with ${code}: ${stderr}`)));
      });
      expect(listening.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect([listening.model, listening.covered]).toEqual(["kjv-llama-6m", true]);
      const client = new OpenAI({ baseURL: `${listening.url}/v1`, apiKey: "unused", maxRetries: 0 });
      expect((await client.models.list()).data.map((m) => m.id)).toEqual(["kjv-llama-6m"]);
      const answer = await client.completions.create({ model: "kjv-llama-6m", prompt: "In the beginning", max_tokens: 4, temperature: 0 });
      expect([answer.usage!.completion_tokens, answer.choices[0]!.finish_reason]).toEqual([4, "length"]);
      const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
    } finally {
      await stopProcess(child);
    }
  });
});
