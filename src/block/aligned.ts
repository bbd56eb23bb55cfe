/**
 * Page-aligned buffers for bulk I/O (the copy engine's request buffers).
 *
 * Why: a read from the page cache ends in the kernel copying whole pages into the caller's buffer
 * (`rep movsb`). Node's large ArrayBuffers come from malloc, which places them 16 bytes past a page
 * boundary; a destination that close behind its page-aligned source runs into 4K aliasing, and
 * such a copy measured here at 0.7-0.85 GB/s against 2.5-6 GB/s into a page-aligned buffer (2 MiB
 * preads of a cached file, Node 24, this machine). qemu reads into page-aligned buffers
 * (qemu_blockalign), so vdisk spent twice qemu's kernel time on the same preads.
 *
 * JavaScript cannot ask where an ArrayBuffer lives, but a WebAssembly memory is mapped by itself,
 * so it starts on a page boundary; slices at multiples of 4 KiB stay aligned. Its pages are
 * mapped on first touch, so untouched buffers cost no memory. Where WebAssembly is unavailable
 * (--jitless) or the mapping is refused (a tight address-space limit), plain arrays are used.
 */

/** What "aligned" means here: the host page size on every platform vdisk runs on. */
export const IO_ALIGNMENT = 4096;
const WASM_PAGE = 65536;

/** The one WebAssembly call used (the project's lib settings carry no WebAssembly types). */
interface WasmMemoryCtor {
  new (d: { initial: number; maximum: number }): { buffer: ArrayBuffer };
}
const WasmMemory = (globalThis as { WebAssembly?: { Memory?: WasmMemoryCtor } }).WebAssembly?.Memory;

/**
 * `count` buffers of `bytes` each (rounded up to IO_ALIGNMENT in the backing memory), page-aligned
 * when the platform allows. They never move or detach: nothing grows the memory behind them.
 */
export function alignedBuffers(count: number, bytes: number): Uint8Array[] {
  const stride = Math.ceil(bytes / IO_ALIGNMENT) * IO_ALIGNMENT;
  let backing: ArrayBuffer | undefined;
  try {
    if (WasmMemory && count > 0 && bytes > 0) {
      const pages = Math.ceil((stride * count) / WASM_PAGE);
      backing = new WasmMemory({ initial: pages, maximum: pages }).buffer;
    }
  } catch {
    backing = undefined;
  }
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) out.push(backing ? new Uint8Array(backing, i * stride, bytes) : new Uint8Array(bytes));
  return out;
}
