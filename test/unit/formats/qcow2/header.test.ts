import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  HEADER_FIELDS, V2_HEADER_BYTES, V3_HEADER_BYTES, decodeHeader, encodeHeader, fieldEnd, checkHeader, virtualSize,
} from '../../../../dist/formats/qcow2/header.js';
import { parseExtensions, encodeExtensions, unsupportedFeatures } from '../../../../dist/formats/qcow2/extensions.js';

function sample() {
  return {
    magic: 0x514649fb, version: 3, backingFileOffset: 0x1f0n, backingFileSize: 9, clusterBits: 16, size: 1n << 40n,
    cryptMethod: 0, l1Size: 2048, l1TableOffset: 0x30000n, refcountTableOffset: 0x10000n, refcountTableClusters: 1,
    nbSnapshots: 2, snapshotsOffset: 0x50000n, incompatibleFeatures: 0x10n, compatibleFeatures: 1n,
    autoclearFeatures: 2n, refcountOrder: 4, headerLength: 112, compressionType: 1,
  };
}

test('the header field table covers the spec layout without gaps or overlaps up to 105 bytes', () => {
  const sorted = [...HEADER_FIELDS].sort((a, b) => a.offset - b.offset);
  let end = 0;
  for (const f of sorted) {
    assert.equal(f.offset, end, `field ${f.name} starts where the previous one ends`);
    end = fieldEnd(f);
  }
  assert.equal(end, 105);
  assert.equal(V2_HEADER_BYTES, 72);
  assert.equal(V3_HEADER_BYTES, 112);
});

test('header encode and decode round-trip every field', () => {
  const h = sample();
  const buf = new Uint8Array(V3_HEADER_BYTES);
  encodeHeader(h, buf);
  assert.deepEqual(decodeHeader(buf), h);
  assert.deepEqual([...buf.subarray(0, 4)], [0x51, 0x46, 0x49, 0xfb]);
});

test('a v2 header gets the v3 defaults for the fields it lacks', () => {
  const h = { ...sample(), version: 2, headerLength: 0, refcountOrder: 0, incompatibleFeatures: 0x10n };
  checkHeader(h, 'x.qcow2');
  assert.equal(h.headerLength, 72);
  assert.equal(h.refcountOrder, 4);
  assert.equal(h.incompatibleFeatures, 0n);
});

test('header checks use qemu-img wording', () => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ magic: 0 }, 'Image is not in qcow2 format'],
    [{ version: 4 }, 'Unsupported qcow2 version 4'],
    [{ version: 1 }, 'Unsupported qcow2 version 1'],
    [{ clusterBits: 8 }, 'Unsupported cluster size: 2^8'],
    [{ clusterBits: 22 }, 'Unsupported cluster size: 2^22'],
    [{ headerLength: 100 }, 'qcow2 header too short'],
    [{ headerLength: 0x20000 }, 'qcow2 header exceeds cluster size'],
    [{ backingFileOffset: 0x10001n }, 'Invalid backing file offset'],
  ];
  for (const [patch, msg] of cases) {
    assert.throws(() => checkHeader({ ...sample(), ...patch }, 'x.qcow2'), { message: msg });
  }
});

test('virtual size is cut down to whole sectors and refused above 2^53', () => {
  assert.equal(virtualSize({ ...sample(), size: 4194305n }, 'x'), 4194304);
  assert.throws(() => virtualSize({ ...sample(), size: 1n << 60n }, 'x'), { message: 'Image is too big' });
});

test('header extensions round-trip, unknown ones kept verbatim', () => {
  const ext = {
    backingFormat: 'qcow2', dataFile: 'd.raw', features: [{ type: 0, bit: 0, name: 'dirty bit' }],
    bitmaps: { nbBitmaps: 1, directorySize: 40n, directoryOffset: 0x70000n },
    unknown: [{ type: 0x12345678, data: new Uint8Array([1, 2, 3]) }],
  };
  const bytes = encodeExtensions(ext);
  assert.equal(bytes.length % 8, 0);
  const back = parseExtensions(bytes, 0, bytes.length, 'x');
  assert.deepEqual(back, ext);
});

test('an extension longer than the extension area is refused', () => {
  const b = new Uint8Array(64);
  new DataView(b.buffer).setUint32(0, 0x12345678);
  new DataView(b.buffer).setUint32(4, 0x7ffffff0);
  assert.throws(() => parseExtensions(b, 0, 64, 'x'), { message: 'Header extension too large' });
});

test('unknown incompatible features are named from the feature table, the rest shown in hex', () => {
  const names = [{ type: 0, bit: 8, name: 'frobnication' }];
  assert.equal(unsupportedFeatures((1n << 8n) | (1n << 40n), names),
    'Unsupported qcow2 feature(s): frobnication, Unknown incompatible feature: 10000000000');
});
