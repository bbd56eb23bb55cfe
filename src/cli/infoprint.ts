/**
 * `info` output: the ImageInfo record qemu-img builds (field names and insertion order as QAPI's
 * ImageInfo), printed as JSON in QDict order or as the human dump.
 */
import type { Image } from '../block/image.js';
import type { JsonObject, JsonValue, SnapshotInfo } from '../block/driver.js';
import { resolveBackingName } from '../block/open.js';
import { humanSize } from './units.js';
import { qdictOrder, qdictOrderDeep } from './qjson.js';
import { formatSnapshotTable } from './snapshots.js';

export interface InfoData {
  filename: string;
  format: string;
  virtualSize: number;
  actualSize?: number;
  clusterSize?: number;
  encrypted?: boolean;
  /** Absent where qemu's bdrv_get_info fails (raw over a protocol that has none: nbd). */
  dirty?: boolean;
  backingFilename?: string;
  fullBackingFilename?: string;
  backingFormat?: string;
  snapshots?: SnapshotInfo[];
  formatSpecific?: { type: string; data: JsonObject };
}

export async function imageInfo(img: Image): Promise<InfoData> {
  const li = await img.info();
  const d: InfoData = {
    filename: img.displayName,
    format: img.format,
    virtualSize: img.size,
  };
  if (!(img.protocol.protocol === 'nbd' && (img.format === 'raw' || img.format === 'nbd'))) d.dirty = li.dirty ?? false;
  const actual = await img.allocatedSize();
  if (actual !== undefined) d.actualSize = actual;
  if (li.clusterSize !== undefined) d.clusterSize = li.clusterSize;
  if (li.encrypted) d.encrypted = true;
  if (li.backingFile !== undefined) {
    d.backingFilename = li.backingFile;
    // a quorum has no directory of its own to resolve a relative name in
    if (img.protocol.protocol !== 'quorum') d.fullBackingFilename = resolveBackingName(img.filename, li.backingFile);
    if (li.backingFormat !== undefined) d.backingFormat = li.backingFormat;
  }
  if (li.snapshots && li.snapshots.length > 0) d.snapshots = li.snapshots;
  if (li.formatSpecific) d.formatSpecific = li.formatSpecific;
  return d;
}

/** SnapshotInfo's keys in QAPI order, then in qemu's QDict order (computed once: images may have 65536 snapshots). */
const SNAPSHOT_KEYS = ['id', 'name', 'vm-state-size', 'date-sec', 'date-nsec', 'vm-clock-sec', 'vm-clock-nsec', 'icount'] as const;
const SNAPSHOT_ORDER = Object.keys(qdictOrder(Object.fromEntries(SNAPSHOT_KEYS.map((k) => [k, 0])))) as Array<typeof SNAPSHOT_KEYS[number]>;

function snapshotJson(s: SnapshotInfo): JsonObject {
  const v: Record<typeof SNAPSHOT_KEYS[number], JsonValue | undefined> = {
    id: s.id,
    name: s.name,
    'vm-state-size': s.vmStateSize,
    'date-sec': s.dateSec,
    'date-nsec': s.dateNsec,
    'vm-clock-sec': Math.floor(s.vmClockNsec / 1e9),
    'vm-clock-nsec': s.vmClockNsec % 1e9,
    icount: s.icount,
  };
  const o: JsonObject = {};
  for (const k of SNAPSHOT_ORDER) if (v[k] !== undefined) o[k] = v[k];
  return o;
}

/** ImageInfo fields in QAPI order (insertion order decides QDict bucket collisions). */
export function infoJson(d: InfoData): JsonValue {
  const o: JsonObject = {};
  o['filename'] = d.filename;
  o['format'] = d.format;
  if (d.dirty !== undefined) o['dirty-flag'] = d.dirty;
  if (d.actualSize !== undefined) o['actual-size'] = d.actualSize;
  o['virtual-size'] = d.virtualSize;
  if (d.clusterSize !== undefined) o['cluster-size'] = d.clusterSize;
  if (d.encrypted !== undefined) o['encrypted'] = d.encrypted;
  if (d.backingFilename !== undefined) {
    o['backing-filename'] = d.backingFilename;
    if (d.fullBackingFilename !== undefined) o['full-backing-filename'] = d.fullBackingFilename;
    if (d.backingFormat !== undefined) o['backing-filename-format'] = d.backingFormat;
  }
  if (d.snapshots) o['snapshots'] = d.snapshots.map(snapshotJson);
  if (d.formatSpecific) {
    o['format-specific'] = qdictOrder({ type: d.formatSpecific.type, data: qdictOrderDeep(d.formatSpecific.data) });
  }
  return qdictOrder(o);
}

/** qemu's dump of a QObject tree: keys with '-' shown as ' ', lists as [i]:, 4 spaces a level. */
export function dumpQObject(v: JsonValue, indent: number): string {
  const pad = ' '.repeat(indent * 4);
  let s = '';
  if (Array.isArray(v)) {
    v.forEach((x, i) => {
      const composite = x !== null && typeof x === 'object';
      s += `${pad}[${i}]:${composite ? '\n' : ' '}` + dumpQObject(x, indent + 1);
    });
    return s;
  }
  if (v !== null && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      const composite = x !== null && typeof x === 'object';
      s += `${pad}${k.replace(/-/g, ' ')}:${composite ? '\n' : ' '}` + dumpQObject(x, indent + 1);
    }
    return s;
  }
  return `${String(v)}\n`;
}

export function printInfoHuman(d: InfoData): string {
  let s = `image: ${d.filename}\nfile format: ${d.format}\n`;
  s += `virtual size: ${humanSize(d.virtualSize)} (${d.virtualSize} bytes)\n`;
  s += `disk size: ${d.actualSize === undefined ? 'unavailable' : humanSize(d.actualSize)}\n`;
  if (d.encrypted) s += 'encrypted: yes\n';
  if (d.clusterSize !== undefined) s += `cluster_size: ${d.clusterSize}\n`;
  if (d.dirty) s += 'cleanly shut down: no\n';
  if (d.backingFilename !== undefined) {
    s += `backing file: ${d.backingFilename}`;
    if (d.fullBackingFilename === undefined) s += ' (cannot determine actual path)';
    else if (d.fullBackingFilename !== d.backingFilename) s += ` (actual path: ${d.fullBackingFilename})`;
    s += '\n';
    if (d.backingFormat !== undefined) s += `backing file format: ${d.backingFormat}\n`;
  }
  if (d.snapshots && d.snapshots.length > 0) s += 'Snapshot list:\n' + formatSnapshotTable(d.snapshots);
  if (d.formatSpecific) {
    s += 'Format specific information:\n' + dumpQObject(qdictOrderDeep(d.formatSpecific.data), 1);
  }
  return s;
}
