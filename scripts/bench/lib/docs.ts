/** Replaces (or appends) the `## heading` section of a markdown document with `body`. */
export function replaceSection(doc: string, heading: string, body: string): string {
  const marker = `## ${heading}`;
  const section = `${marker}\n\n${body.trim()}\n`;
  const start = doc.indexOf(marker);
  if (start === -1) return `${doc.trimEnd()}\n\n${section}`;
  const next = doc.indexOf("\n## ", start + marker.length);
  return doc.slice(0, start) + section + (next === -1 ? "" : doc.slice(next));
}
