/**
 * The one list of formats, in probe order (raw last, as the fallback). Each entry's probe is a
 * small pure function over the first PROBE_BYTES of a file; the driver itself is loaded lazily,
 * so start-up never pays for formats a command does not touch.
 */
import type { FormatDriver } from '../block/driver.js';
import { probeQcow2 } from './qcow2/probe.js';
import { probeVmdk } from './vmdk/probe.js';
import { probeVhdx } from './vhdx/probe.js';
import { probeVpc } from './vpc/probe.js';
import { probeVdi } from './vdi/probe.js';
import { probeQed } from './qed/probe.js';
import { probeQcow } from './qcow/probe.js';
import { probeLuks } from './luks/probe.js';
import { probeParallels } from './parallels/probe.js';
import { probeDmg } from './dmg/probe.js';
import { probeCloop } from './cloop/probe.js';
import { probeBochs } from './bochs/probe.js';

/** A format that is detected but not readable yet. */
function detectedOnly(name: string, probe: (head: Uint8Array, filename: string) => number): FormatEntry {
  return { name, probe, load: async () => (await import('./unsupported.js')).unsupportedDriver(name), readable: false, creatable: false };
}

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
  detectedOnly('vmdk', probeVmdk),
  detectedOnly('vhdx', probeVhdx),
  detectedOnly('vpc', probeVpc),
  detectedOnly('vdi', probeVdi),
  detectedOnly('qed', probeQed),
  detectedOnly('qcow', probeQcow),
  { name: 'luks', probe: probeLuks, load: async () => (await import('./luks/driver.js')).luksDriver, readable: true, creatable: true },
  detectedOnly('parallels', probeParallels),
  detectedOnly('bochs', probeBochs),
  detectedOnly('cloop', probeCloop),
  detectedOnly('dmg', probeDmg),
  { name: 'raw', probe: () => 1, load: async () => (await import('./raw/driver.js')).rawDriver, readable: true, creatable: true },
];

export function findFormat(name: string): FormatEntry | undefined {
  return FORMATS.find((f) => f.name === name);
}
