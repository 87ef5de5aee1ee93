// Deterministic pseudo-random bytes generated on the fly (xorshift32), so tests can stream hundreds of MiB
// without ever holding them, and reproduce the same content (and sha256) on demand.

const chunkBytes = 1024 * 1024;

/** `totalBytes` bytes in 1 MiB chunks; the same seed gives the same bytes. onChunk sees the running total. */
export async function* deterministicBytes(
  totalBytes: number,
  seed = 1,
  onChunk?: (bytesSoFar: number) => void,
): AsyncGenerator<Uint8Array> {
  let state = seed >>> 0 || 1;
  for (let produced = 0; produced < totalBytes; ) {
    const size = Math.min(chunkBytes, totalBytes - produced);
    const words = new Uint32Array(Math.ceil(size / 4)); // (size/4,) fresh per chunk: consumers may keep it
    for (let index = 0; index < words.length; index++) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      words[index] = state >>> 0;
    }
    produced += size;
    yield new Uint8Array(words.buffer, 0, size);
    onChunk?.(produced);
  }
}
