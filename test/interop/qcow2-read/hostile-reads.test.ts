/**
 * Hostile qcow2 images: reading every allocated byte either gives what qemu-img gives or fails
 * with a clear error, quickly, and never reads more metadata than the named limits allow.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { openImage } from '../../../dist/block/open.js';
import { fixturesDir, manifest } from '../../helpers/oracle.ts';

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
