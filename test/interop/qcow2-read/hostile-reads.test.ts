/**
 * Hostile qcow2 images: reading every allocated byte either gives what qemu-img gives or fails
 * with a clear error, quickly, and never reads more metadata than the named limits allow.
 *
 * Then every hostile qcow2 fixture (and the AFL-fuzzed real/afl5.img) through `info`,
 * `convert -O raw`, `map` and `check`, each as a separate vdisk process: each ends within HANG_GUARD_S (killed otherwise),
 * stays under PEAK_RSS_CAP_KIB of peak RSS (measured by /usr/bin/time from the child), never dies
 * of a signal or prints a stack trace, and ends like the real qemu-img 7.2 where qemu-img itself
 * ends sanely: same exit code, and when both fail, vdisk's message is qemu's (or the cause part of
 * it, for the read errors where qemu adds context). Where qemu-img hangs, recurses until it runs
 * out of memory, or reads host files (backing loops, self-references, json:/nbd: backings),
 * vdisk must fail fast with an error that names the image.
 *
 * No timing assertion beyond the hang guard: the bound is the "ends within 10 s".
 */
import { suite, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { openImage } from '../../../dist/block/open.js';
import { fixturesDir, manifest, vdiskAsQemuImg, type ManifestEntry } from '../../helpers/oracle.ts';

const root = fixturesDir();
const hostile = manifest().filter((e) => e.group === 'hostile' && e.path.includes('qcow2'));

/** Read every byte the chain says is data; returns the error message or 'ok'. */
async function readAll(path: string): Promise<string> {
  let img;
  try {
    img = await openImage(path, { format: 'qcow2', readOnly: true });
  } catch (e) {
    return (e as Error).message;
  }
  try {
    let off = 0;
    const buf = new Uint8Array(1 << 20);
    while (off < img.size) {
      const st = await img.chainStatus(off, img.size - off);
      if (st.data) {
        const n = Math.min(st.length, buf.length);
        await img.read(buf.subarray(0, n), off);
        off += n;
      } else {
        off += st.length;
      }
    }
    return 'ok';
  } catch (e) {
    return (e as Error).message;
  } finally {
    await img.close();
  }
}

for (const e of hostile) {
  const q = e.qemu_img_7_2?.['convert'];
  test(`${e.path} (${e.defect}) fails cleanly or reads like qemu-img`, async () => {
    const result = await readAll(join(root, e.path));
    assert.ok(result.length > 0 && !/undefined|NaN|\[object/.test(result), result);
    const qemuFailedAtOpen = q?.exit_code === 1 && /Could not open '[^']*': /.test(q.stderr_first_line ?? '') && !/backing file/.test(q.stderr_first_line ?? '');
    if (qemuFailedAtOpen) {
      const cause = q!.stderr_first_line!.replace(/^qemu-img: Could not open '[^']*': /, '');
      assert.equal(result, cause);
    }
  });
}

test('a compressed cluster pointing into the header fails the read with EIO like qemu-img', async () => {
  assert.equal(await readAll(join(root, 'hostile/qcow2-compressed-into-header.qcow2')), 'Input/output error');
});

test('an unaligned L2 table offset is reported as corruption with qemu\'s details', async () => {
  assert.equal(await readAll(join(root, 'hostile/qcow2-l1-entry-points-at-header.qcow2')),
    'Image is corrupt: L2 table offset 0x200 unaligned (L1 index: 0)');
});

/** The hang guard: a command still running after this is a hang. */
const HANG_GUARD_S = 10;
/** The memory cap for hostile input. */
const PEAK_RSS_CAP_KIB = 256 * 1024;

const entries = manifest().filter((e) => (e.group === 'hostile' && e.format === 'qcow2') || e.path === 'real/afl5.img');
const COMMANDS = ['info', 'convert', 'map', 'check'] as const;
type Command = typeof COMMANDS[number];

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
  rssKiB: number;
  seconds: number;
}

/** Run `cmd` (vdisk or qemu-img) under `timeout` and `/usr/bin/time`, in the image's directory. */
function runBounded(cmd: string, args: string[], cwd: string): Outcome {
  const dir = mkdtempSync(join(tmpdir(), 'vdisk-hostile-'));
  try {
    const stats = join(dir, 'time');
    const r = spawnSync('/usr/bin/time', ['-o', stats, '-f', '%M %e', 'timeout', '-s', 'KILL', String(HANG_GUARD_S), cmd, ...args.map((a) => a.replace('@OUT@', join(dir, 'out.raw')))],
      { cwd, encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, TZ: 'UTC' } });
    const line = readFileSync(stats, 'utf8').trim().split('\n').at(-1)!.split(' ');
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, rssKiB: Number(line[0]), seconds: Number(line[1]) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function argsFor(cmd: Command, file: string): string[] {
  switch (cmd) {
    case 'info': return ['info', '-f', 'qcow2', file];
    case 'convert': return ['convert', '-f', 'qcow2', '-O', 'raw', file, '@OUT@'];
    case 'map': return ['map', '-f', 'qcow2', '--output=json', file];
    case 'check': return ['check', '-f', 'qcow2', file];
  }
}

/**
 * Whether qemu-img's recorded behaviour is a reference: not for images where it recurses through
 * a backing loop, opens host files, or needs the network (vdisk refuses those by design).
 */
function qemuIsReference(e: ManifestEntry): boolean {
  if (e.host_dependent || /loop|backing-self|backing-nbd|backing-json/.test(e.path)) return false;
  return Object.values(e.qemu_img_7_2 ?? {}).every((q) => !q.timed_out && !q.signal);
}

const firstLine = (s: string): string => s.split('\n')[0] ?? '';
const cause = (line: string): string => line.replace(/^qemu-img: /, '').replace(/^qcow2: /, '').replace(/; further non-fatal corruption events will be suppressed$/, '');

for (const e of entries) {
  const file = basename(e.path);
  const cwd = join(root, dirname(e.path));
  suite(`${e.path} (${e.defect ?? 'fuzzed'})`, { concurrency: 2 }, () => {
    for (const cmd of COMMANDS) {
      test(`${cmd} ends within ${HANG_GUARD_S} s under ${PEAK_RSS_CAP_KIB / 1024} MiB, cleanly${qemuIsReference(e) ? ' and like qemu-img' : ''}`, () => {
        const v = runBounded(vdiskAsQemuImg(), argsFor(cmd, file), cwd);
        const what = `vdisk ${cmd} ${e.path}: exit ${v.code}, ${v.seconds} s, ${v.rssKiB} KiB\n${v.stderr.slice(0, 2000)}`;
        assert.notEqual(v.code, 137, `hung (killed after ${HANG_GUARD_S} s): ${what}`);
        assert.ok(v.rssKiB < PEAK_RSS_CAP_KIB, `peak RSS over the cap: ${what}`);
        assert.ok([0, 1, 2, 3].includes(v.code), `unexpected exit: ${what}`);
        assert.doesNotMatch(v.stderr, /\n\s+at |undefined|NaN|\[object |RangeError|TypeError/, what);
        if (v.code !== 0) assert.match(firstLine(v.stderr), /\S/, `failed without a message: ${what}`);
        if (!qemuIsReference(e)) {
          if (v.code === 1) assert.ok(v.stderr.includes(file), `the error names the image: ${what}`);
          return;
        }
        const q = cmd === 'map' ? runBounded('/usr/bin/qemu-img', argsFor(cmd, file), cwd) : undefined;
        // qemu-img itself past the hang guard (65536 snapshots on a busy machine): no reference
        if (q?.code === 137) return;
        const recorded = cmd === 'map' ? undefined : e.qemu_img_7_2?.[cmd];
        const qCode = q ? q.code : recorded?.exit_code;
        const qLine = q ? firstLine(q.stderr) : recorded?.stderr_first_line ?? '';
        assert.equal(v.code, qCode, `exit code differs from qemu-img's (${qCode}: ${qLine}): ${what}`);
        if (q && v.code === 0) assert.equal(v.stdout, q.stdout, `map output differs from qemu-img's: ${what}`);
        if (v.code === 0 || cmd === 'check') return;
        if (/^qemu-img: Could not open '/.test(qLine)) assert.equal(firstLine(v.stderr), qLine);
        else assert.ok(qLine.includes(cause(firstLine(v.stderr))), `vdisk's error "${firstLine(v.stderr)}" is not the cause qemu-img reports ("${qLine}")`);
        if (q) assert.equal(v.stdout, q.stdout, `map output before the error differs from qemu-img's: ${what}`);
      });
    }
  });
}
