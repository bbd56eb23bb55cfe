import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk, type RunResult } from '../../helpers/oracle.ts';

// qemu rebuilds an image's name from its tree of block nodes: blkdebug without rules of its own
// is `blkdebug:CONFIG:FILE`, and trees it cannot name (blkdebug rules, any quorum) print as
// json:{...} in QDict order with the values' given types; a quorum has no directory for a
// relative backing name (iotest 110)
function setup(d: string): void {
  for (const args of [['create', '-f', 'qcow2', 't.qcow2.base', '64M'], ['create', '-f', 'qcow2', '-b', 't.qcow2.base', '-F', 'qcow2', 't.qcow2']]) {
    const r = qemuImg(args, { cwd: d });
    assert.equal(r.code, 0, r.stderr);
  }
  copyFileSync(join(d, 't.qcow2'), join(d, 't.qcow2.copy'));
  writeFileSync(join(d, 'bd.conf'), '[inject-error]\nevent = "read_aio"\n');
}

function both(names: (d: string) => string[][]): void {
  const a = scratch();
  const b = scratch();
  setup(a);
  setup(b);
  const clean = (r: RunResult, d: string): RunResult => ({
    code: r.code, stdout: r.stdout.replaceAll(d, 'D').replace(/disk size: [0-9.]+ KiB/, 'disk size: N').replace(/"actual-size": \d+/, '"actual-size": N'),
    stderr: r.stderr.replaceAll(d, 'D'),
  });
  const an = names(a);
  const bn = names(b);
  for (let i = 0; i < an.length; i++) {
    assert.deepEqual(clean(vdisk(bn[i]!, { cwd: b }), b), clean(qemuImg(an[i]!, { cwd: a }), a), an[i]!.join(' '));
  }
}

test('info names qcow2 over blkdebug as qemu-img does: blkdebug:CONFIG:FILE, or json: once it has rules', () => {
  both((d) => [
    ['info', `json:{'driver':'qcow2','file':{'driver':'blkdebug','image':{'driver':'file','filename':'${d}/t.qcow2'}}}`],
    ['info', `json:{'driver':'qcow2','file':{'driver':'blkdebug','config':'${d}/bd.conf','image':{'driver':'file','filename':'${d}/t.qcow2'}}}`],
    ['info', `json:{'driver':'qcow2','file':{'driver':'blkdebug','image':{'driver':'file','filename':'${d}/t.qcow2'},'set-state':[{'event':'read_aio','new_state':42}]}}`],
    ['info', '--output=json', `json:{'driver':'qcow2','file':{'driver':'blkdebug','image':{'driver':'file','filename':'${d}/t.qcow2'},'set-state':[{'event':'read_aio','new_state':42}]}}`],
    ['info', '--image-opts', `driver=qcow2,file.driver=blkdebug,file.image.filename=${d}/t.qcow2,file.inject-error.0.event=read_aio,file.inject-error.0.once=on`],
  ]);
});

test('info names a quorum tree as json: and cannot resolve a relative backing name under it', () => {
  both((d) => [
    ['info', `json:{'driver':'qcow2','file':{'driver':'quorum','vote-threshold':1,'children':[{'driver':'file','filename':'${d}/t.qcow2'},{'driver':'file','filename':'${d}/t.qcow2.copy'}]}}`],
    ['info', '--output=json', `json:{'driver':'qcow2','file':{'driver':'quorum','vote-threshold':1,'children':[{'driver':'file','filename':'${d}/t.qcow2'},{'driver':'file','filename':'${d}/t.qcow2.copy'}]}}`],
    ['info', '--image-opts', `driver=raw,file.driver=quorum,file.vote-threshold=2,file.children.0.driver=qcow2,file.children.0.file.filename=${d}/t.qcow2,file.children.1.driver=qcow2,file.children.1.file.filename=${d}/t.qcow2.copy`],
    ['info', '--image-opts', `driver=quorum,vote-threshold=1,children.0.driver=qcow2,children.0.file.filename=${d}/t.qcow2`],
  ]);
});

test('info of blkdebug above a format shows the filter node: no backing file, no format details, no disk size', () => {
  both((d) => [
    ['info', `json:{'driver':'blkdebug','image':{'driver':'qcow2','file':{'driver':'file','filename':'${d}/t.qcow2'}}}`],
    ['info', '--output=json', `json:{'driver':'blkdebug','inject-error':[{'event':'read_aio'}],'image':{'driver':'qcow2','file':{'filename':'${d}/t.qcow2'}}}`],
  ]);
});

test('map names the file node of a format over blkdebug as qemu-img does', () => {
  both((d) => {
    const r = qemuIo(['-c', 'write 0 64k', join(d, 't.qcow2')]);
    assert.equal(r.code, 0, r.stderr);
    return [
      ['map', `blkdebug::${d}/t.qcow2`],
      ['map', `json:{'driver':'qcow2','file':{'driver':'blkdebug','image':{'filename':'${d}/t.qcow2'},'set-state':[{'event':'read_aio','new_state':3}]}}`],
      ['map', `json:{'driver':'qcow2','file':{'driver':'blkdebug','config':'${d}/bd.conf','image':{'filename':'${d}/t.qcow2'}}}`],
      ['map', `json:{'driver':'blkdebug','image':{'driver':'qcow2','file':{'filename':'${d}/t.qcow2'}}}`],
    ];
  });
});
