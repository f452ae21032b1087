/** Transposes a row-major (rows, cols) matrix into a new (cols, rows) one. */
export function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  if (m.length !== rows * cols) throw new Error(`transpose: ${m.length} elements is not ${rows}×${cols}`);
  const out = new Float32Array(m.length);
  // Blocked so both the read and the write stay in cache for large matrices.
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(r0 + B, rows);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(c0 + B, cols);
      for (let r = r0; r < r1; r++) {
        const rowBase = r * cols;
        for (let c = c0; c < c1; c++) out[c * rows + r] = m[rowBase + c]!;
      }
    }
  }
  return out;
}
