import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';

// rebase keeps what the old chain showed: past the end of the old backing file (or with none)
// that is zeros, written as zero clusters; inside it, the old bytes are written as data
const C = 65536;
type Setup = (d: string) => void;
function q(d: string, args: string[]): void {
  assert.equal(qemuImg(args, { cwd: d }).code, 0, args.join(' '));
}
function io(d: string, f: string, ...cmds: string[]): void {
  assert.equal(qemuIo([...cmds.flatMap((c) => ['-c', c]), join(d, f)]).code, 0);
}
const newBase: Setup = (d) => {
  q(d, ['create', '-q', '-f', 'qcow2', 'n.qcow2', String(6 * C)]);
  io(d, 'n.qcow2', `write -P 0x11 0 ${C}`, `write -P 0x11 ${2 * C} ${C}`, `write -P 0x11 ${4 * C} ${C}`);
};
const cases: Array<[string, Setup]> = [
  ['no old backing file', (d) => {
    q(d, ['create', '-q', '-f', 'qcow2', 't.qcow2', String(6 * C)]);
    io(d, 't.qcow2', `write -P 0x22 0 ${2 * C}`, `write -P 0x11 ${2 * C} ${2 * C}`);
  }],
  ['old backing file with a zero cluster', (d) => {
    q(d, ['create', '-q', '-f', 'qcow2', 'o.qcow2', String(6 * C)]);
    io(d, 'o.qcow2', `write -P 0x33 0 ${6 * C}`, `write -z 0 ${C}`);
    q(d, ['create', '-q', '-f', 'qcow2', '-b', 'o.qcow2', '-F', 'qcow2', 't.qcow2']);
  }],
  ['old backing file shorter than the image', (d) => {
    q(d, ['create', '-q', '-f', 'qcow2', 'o.qcow2', String(2 * C)]);
    io(d, 'o.qcow2', `write -P 0x33 0 ${2 * C}`);
    q(d, ['create', '-q', '-f', 'qcow2', '-b', 'o.qcow2', '-F', 'qcow2', 't.qcow2', String(6 * C)]);
  }],
];
for (const [label, setup] of cases) {
  test(`rebase onto a new backing file matches qemu-img: ${label}`, () => {
    const a = scratch();
    const b = scratch();
    for (const d of [a, b]) {
      setup(d);
      newBase(d);
    }
    const argv = ['rebase', '-b', 'n.qcow2', '-F', 'qcow2', 't.qcow2'];
    assert.deepEqual(vdisk(argv, { cwd: b }), qemuImg(argv, { cwd: a }));
    const mapOf = (d: string): string => qemuImg(['map', '--output=json', 't.qcow2'], { cwd: d }).stdout.replace(/"offset": \d+/g, 'O');
    assert.equal(mapOf(b), mapOf(a));
    assert.equal(qemuImg(['compare', join(a, 't.qcow2'), join(b, 't.qcow2')]).code, 0);
  });
}
