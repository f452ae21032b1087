import { existsSync, readFileSync, writeFileSync } from "node:fs";

/** Replaces (or appends) the `## heading` section of a markdown document with `body`. */
export function replaceSection(doc: string, heading: string, body: string): string {
  const marker = `## ${heading}`;
  const section = `${marker}\n\n${body.trim()}\n`;
  const start = doc.indexOf(marker);
  if (start === -1) return `${doc.trimEnd()}\n\n${section}`;
  const next = doc.indexOf("\n## ", start + marker.length);
  return doc.slice(0, start) + section + (next === -1 ? "" : doc.slice(next));
}

/**
 * Whether the benchmark was asked to write its results into docs/: `--write`, or EFED_WRITE_DOCS=1
 * for scripts run by `hardhat run`, which passes a script no flags. Running one never dirties the tree otherwise.
 */
export const WRITE_DOCS = process.argv.includes("--write") || process.env.EFED_WRITE_DOCS === "1";

/**
 * Replaces the given `## heading` sections of `docPath` (created with `title` when missing), only
 * with `--write`; otherwise says on stderr what it would have written.
 */
export function writeDocSections(docPath: string, title: string, sections: Readonly<Record<string, string>>): void {
  if (!WRITE_DOCS) {
    console.error(`(${docPath} not written: pass --write to record these results)`);
    return;
  }
  let doc = existsSync(docPath) ? readFileSync(docPath, "utf8") : `# ${title}\n`;
  for (const [heading, body] of Object.entries(sections)) doc = replaceSection(doc, heading, body);
  writeFileSync(docPath, doc);
  console.error(`wrote ${docPath}`);
}
