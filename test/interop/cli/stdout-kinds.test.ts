/**
 * vdisk writes stdout straight to the descriptor when it is a file, a pipe or a socket, and
 * through process.stdout otherwise (a terminal, /dev/null) or once a non-blocking descriptor
 * would block. Whatever stdout is, the bytes that arrive are qemu-img's, in full.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { QEMU_IMG, qemuImg, qemuIo, scratch, vdiskAsQemuImg } from '../../helpers/oracle.ts';

const dir = scratch('vdisk-stdout-');
const img = join(dir, 'frag.qcow2');
assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', img, '1G']).code, 0);
// thousands of extents: several times what a pipe or socket buffer holds
assert.equal(qemuIo(['-f', 'qcow2', ...Array.from({ length: 3000 }, (_, i) => ['-c', `write ${i * 128}k 4k`]).flat(), img]).code, 0);

/** `sh -c script` with $PROG and $IMG set; its stdout (a socket pair to this process) as text. */
function sh(script: string, prog: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('sh', ['-c', script], { env: { ...process.env, PROG: prog, IMG: img, OUT: join(dir, 'out') }, encoding: 'utf8', maxBuffer: 1 << 26 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const SET_NONBLOCK = 'import fcntl, os, sys; fcntl.fcntl(1, fcntl.F_SETFL, fcntl.fcntl(1, fcntl.F_GETFL) | os.O_NONBLOCK); os.execv(sys.argv[1], sys.argv[1:])';

const cases: [string, string][] = [
  ['a regular file', '"$PROG" map --output=json "$IMG" > "$OUT"; s=$?; cat "$OUT"; exit $s'],
  ['a pipe', '"$PROG" map --output=json "$IMG" | cat'],
  ['a socket', 'exec "$PROG" map --output=json "$IMG"'],
  ['/dev/null (a device)', '"$PROG" map --output=json "$IMG" > /dev/null; echo "status $?"'],
];

for (const [what, script] of cases) {
  test(`map's output to ${what} is qemu-img's, in full`, () => {
    const want = sh(script, QEMU_IMG);
    const got = sh(script, vdiskAsQemuImg());
    assert.equal(want.code, 0, want.stderr);
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
    assert.equal(got.stdout, want.stdout);
  });
}

// qemu-img's stdio drops what does not fit when a write would block (EAGAIN: 64 KiB arrive);
// vdisk then goes on through process.stdout, which waits for the reader
test('map\'s output to a non-blocking pipe whose reader is slow arrives in full', () => {
  const want = sh(cases[1]![1], QEMU_IMG);
  const got = sh(`python3 -c '${SET_NONBLOCK}' "$PROG" map --output=json "$IMG" | { sleep 1; cat; }`, vdiskAsQemuImg());
  assert.equal(got.stderr, '');
  assert.equal(got.code, 0);
  assert.ok(want.stdout.length > 1 << 18, 'more output than a pipe holds');
  assert.equal(got.stdout, want.stdout);
});

test('info to a regular file is qemu-img\'s', () => {
  for (const prog of [QEMU_IMG, vdiskAsQemuImg()]) {
    const r = spawnSync('sh', ['-c', `"${prog}" info --output=json -f qcow2 "${img}" > "${join(dir, prog === QEMU_IMG ? 'q.json' : 'v.json')}"`]);
    assert.equal(r.status, 0);
  }
  assert.equal(readFileSync(join(dir, 'v.json'), 'utf8'), readFileSync(join(dir, 'q.json'), 'utf8'));
});
