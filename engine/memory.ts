/**
 * Detaches `buffer`, releasing its memory at once (ES2024 ArrayBuffer.prototype.transfer, in the
 * Node.js 22 efed runs on); where the runtime lacks it, the garbage collector frees it later.
 */
export function detach(buffer: ArrayBufferLike): void {
  const transfer = (buffer as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer }).transfer;
  if (typeof transfer === "function") transfer.call(buffer, 0);
}
