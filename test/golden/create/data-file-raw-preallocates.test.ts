/**
 * A qcow2 image whose external data file is kept valid as raw (data_file_raw=on) maps every
 * cluster to the same offset of the data file: qemu-img creates and grows it with its metadata
 * preallocated, so the data file's bytes show through at once. And convert -c to such a target
 * fails as qemu's compressed write does.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk, type RunResult } from '../../helpers/oracle.ts';

type Tool = (args: string[], opts: { cwd: string }) => RunResult;

function steps(tool: Tool, dir: string): string[] {
  const out: string[] = [];
  const step = (args: string[]): void => {
    const r = tool(args, { cwd: dir });
    out.push(`${args.join(' ')}\n${r.code}\n${r.stdout}${r.stderr}`);
  };
  step(['create', '-f', 'qcow2', '-o', 'data_file=t.data,data_file_raw=on', 't.qcow2', '1M']);
  step(['map', '--output=json', 't.qcow2']);
  truncateSync(join(dir, 't.data'), 2 << 20);
  assert.equal(qemuIo(['-f', 'raw', '-c', 'write -P 84 1M 1M', 't.data'], { cwd: dir }).code, 0);
  step(['resize', 't.qcow2', '2M']);
  step(['map', '--output=json', 't.qcow2']);
  step(['compare', '-f', 'raw', 't.data', 't.qcow2']);
  step(['create', '-q', '-f', 'qcow2', 'src.qcow2', '1M']);
  assert.equal(qemuIo(['-c', 'write -P 17 0 64k', 'src.qcow2'], { cwd: dir }).code, 0);
  step(['convert', '-O', 'qcow2', '-c', '-o', 'data_file=c.data', 'src.qcow2', 'c.qcow2']);
  return out;
}

test('data_file_raw images are created and grown with every cluster mapped, as by qemu-img', () => {
  const a = scratch();
  const b = scratch();
  assert.deepEqual(steps(vdisk, b), steps(qemuImg, a));
  assert.equal(qemuImg(['check', 't.qcow2'], { cwd: b }).code, 0);
  assert.equal(readFileSync(join(b, 't.qcow2')).length, readFileSync(join(a, 't.qcow2')).length);
});
