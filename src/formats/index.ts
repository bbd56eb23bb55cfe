/**
 * The one list of formats, in probe order (raw last, as the fallback). Each entry's probe is a
 * small pure function over the first PROBE_BYTES of a file; the driver itself is loaded lazily,
 * so start-up never pays for formats a command does not touch.
 */
import type { FormatDriver } from '../block/driver.js';
import { probeQcow2 } from './qcow2/probe.js';

export interface FormatEntry {
  readonly name: string;
  /** Score 0..100 for the file head (and name: dmg probes by extension, as qemu does). Never throws. */
  readonly probe?: (head: Uint8Array, filename: string) => number;
  readonly load: () => Promise<FormatDriver>;
  /** vdisk can read images of this format. */
  readonly readable: boolean;
  /** vdisk can create images of this format. */
  readonly creatable: boolean;
}

export const FORMATS: readonly FormatEntry[] = [
  { name: 'qcow2', probe: probeQcow2, load: async () => (await import('./qcow2/driver.js')).qcow2Driver, readable: true, creatable: true },
  { name: 'raw', probe: () => 1, load: async () => (await import('./raw/driver.js')).rawDriver, readable: true, creatable: true },
];

export function findFormat(name: string): FormatEntry | undefined {
  return FORMATS.find((f) => f.name === name);
}
