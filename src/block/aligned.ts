/**
 * Page-aligned I/O buffers.
 *
 * A large `new Uint8Array(n)` comes from malloc, whose big blocks start 16 bytes into a page. The
 * kernel's copy between the page cache and such a buffer (every pread and pwrite) then runs with
 * source and destination 16 bytes apart modulo the page size, which some CPUs copy at a third of
 * their speed (measured on this project's AMD EPYC host: 1 GiB of hot-cache preads in 2 MiB
 * requests, 0.65 s of system time into a malloc'd buffer, 0.21 s into a page-aligned one; qemu
 * and dd use page-aligned buffers). JavaScript cannot align a plain ArrayBuffer, but the memory
 * of a WebAssembly.Memory is mapped by itself and so starts on a page.
 */

/** Alignment of each buffer: the host page (4 KiB; also a multiple of 512-byte sectors). */
export const IO_ALIGNMENT = 4096;
const WASM_PAGE = 65536;
/** A WebAssembly.Memory holds at most 65536 wasm pages (4 GiB); larger requests get plain arrays. */
const MAX_WASM_PAGES = 65536;

/** The part of WebAssembly this needs (the project's type libraries do not declare WebAssembly). */
interface WasmMemoryConstructor {
  new (descriptor: { initial: number; maximum: number }): { readonly buffer: ArrayBuffer };
}
const WasmMemory = (globalThis as { WebAssembly?: { Memory?: WasmMemoryConstructor } }).WebAssembly?.Memory;

/**
 * `count` zeroed buffers of `size` bytes each, each starting on a page, carved from one
 * allocation (one mapping, however many buffers). Where the host refuses the mapping (an address
 * space limit, no WebAssembly), plain arrays are returned: slower to copy into, but the same bytes.
 */
export function alignedBuffers(count: number, size: number): Uint8Array[] {
  if (!(count > 0) || !(size > 0)) return Array.from({ length: Math.max(0, count) }, () => new Uint8Array(Math.max(0, size)));
  const stride = Math.ceil(size / IO_ALIGNMENT) * IO_ALIGNMENT;
  const pages = Math.ceil((stride * count) / WASM_PAGE);
  let memory: ArrayBuffer | undefined;
  if (WasmMemory && pages <= MAX_WASM_PAGES) {
    try {
      memory = new WasmMemory({ initial: pages, maximum: pages }).buffer;
    } catch {
      memory = undefined;
    }
  }
  if (!memory) return Array.from({ length: count }, () => new Uint8Array(size));
  const buf = memory;
  return Array.from({ length: count }, (_, i) => new Uint8Array(buf, i * stride, size));
}

/** One zeroed page-aligned buffer (see alignedBuffers). */
export function alignedBuffer(size: number): Uint8Array {
  return alignedBuffers(1, size)[0]!;
}

/**
 * `count` page-aligned buffers of `size` bytes, allocated on the first take (a command that
 * finds nothing to read allocates nothing) and handed out again once given back. The caller
 * takes at most `count` at once.
 */
export class AlignedPool {
  private free: Uint8Array[] | undefined;
  constructor(private readonly count: number, private readonly size: number) {}

  take(): Uint8Array {
    this.free ??= alignedBuffers(this.count, this.size);
    const b = this.free.pop();
    if (!b) throw new Error(`AlignedPool: more than ${this.count} buffers taken`);
    return b;
  }

  give(b: Uint8Array): void {
    this.free!.push(b);
  }
}
