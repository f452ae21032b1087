import { sampleCorpus, evaluateModel, readPrompts, DEFAULT_PROMPTS_FILE } from "../node/compress/evaluate.js";
let t = performance.now();
const corpus = await sampleCorpus("models/kjv-llama-6m", readPrompts(DEFAULT_PROMPTS_FILE), { tokens: Number(process.argv[3] ?? 20000) });
console.log("sampled", corpus.length, corpus.reduce((a, s) => a + s.length, 0), (performance.now() - t) / 1000);
t = performance.now();
console.log(await evaluateModel("models/kjv-llama-6m", process.argv[2]!, corpus), (performance.now() - t) / 1000);
