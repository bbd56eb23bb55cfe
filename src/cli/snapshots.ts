/** The snapshot table `info` and `snapshot -l` print (qemu's bdrv_snapshot_dump). */
import type { SnapshotInfo } from '../block/driver.js';
import { humanSize } from './units.js';

const pad2 = (n: number): string => String(n).padStart(2, '0');

let lastDate: [number, string] | undefined;

/** strftime("%Y-%m-%d %H:%M:%S", localtime(sec)); the last answer is kept (tables repeat dates). */
function localDate(sec: number): string {
  if (lastDate?.[0] === sec) return lastDate[1];
  const d = new Date(sec * 1000);
  const text = `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  lastDate = [sec, text];
  return text;
}

function vmClock(nsec: number): string {
  const ms = Math.floor(nsec / 1e6);
  const secs = Math.floor(ms / 1000);
  return `${pad2(Math.floor(secs / 3600))}:${pad2(Math.floor(secs / 60) % 60)}:${pad2(secs % 60)}.${String(ms % 1000).padStart(3, '0')}`;
}

export const SNAPSHOT_TABLE_HEADER = 'ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT\n';

export function formatSnapshotRow(s: SnapshotInfo): string {
  const icount = s.icount === undefined ? '' : String(s.icount);
  return `${s.id.padEnd(9)} ${s.name.padEnd(16)} ${humanSize(s.vmStateSize).padStart(8)}${localDate(s.dateSec).padStart(20)}${vmClock(s.vmClockNsec).padStart(13)}${icount.padStart(11)}\n`;
}

export function formatSnapshotTable(list: readonly SnapshotInfo[]): string {
  return SNAPSHOT_TABLE_HEADER + list.map(formatSnapshotRow).join('');
}
