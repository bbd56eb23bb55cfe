/**
 * blkdebug above a format (`json:{"driver":"blkdebug","image":{...},"inject-error":[...]}`): a
 * filter layer over an opened image whose requests are checked against the injection rules
 * (src/protocols/blkdebug.ts) before they go down. Block status is the whole chain's below (a
 * filter defines nothing of its own, and has no backing file of its own).
 */
import type { FormatLayer, LayerInfo, LayerStatus } from './driver.js';
import type { Image } from './image.js';
import { BlkdebugRules, rulesFromOptions, loadConfigRules } from '../protocols/blkdebug.js';

export class BlkdebugLayer implements FormatLayer {
  readonly size: number;
  readonly granularity?: number;

  constructor(
    private readonly inner: Image,
    private readonly rules: BlkdebugRules,
  ) {
    this.size = inner.size;
    if (inner.layer.granularity !== undefined) this.granularity = inner.layer.granularity;
  }

  async read(buf: Uint8Array, offset: number): Promise<void> {
    this.rules.check('read', offset, buf.length);
    await this.inner.read(buf, offset);
  }

  async blockStatus(offset: number, length: number): Promise<LayerStatus> {
    this.rules.check('block-status', offset, length);
    const st = await this.inner.chainStatus(offset, length);
    const r: LayerStatus = { length: st.length, allocated: st.present, zero: st.zero, data: st.data };
    if (st.hostOffset !== undefined) r.hostOffset = st.hostOffset;
    if (st.hostFile !== undefined) r.hostFile = st.hostFile;
    if (st.compressed) r.compressed = true;
    return r;
  }

  /** A filter has no backing file or format details of its own; qemu passes the cluster size up. */
  async info(): Promise<LayerInfo> {
    const below = await this.inner.info();
    return below.clusterSize !== undefined ? { clusterSize: below.clusterSize } : {};
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    this.rules.check('write', offset, buf.length);
    await this.inner.write(buf, offset);
  }

  async writeZeroes(offset: number, length: number, mayUnmap: boolean): Promise<void> {
    this.rules.check('write-zeroes', offset, length);
    await this.inner.writeZeroes(offset, length, mayUnmap);
  }

  async discard(offset: number, length: number): Promise<void> {
    this.rules.check('discard', offset, length);
    await this.inner.discard(offset, length);
  }

  async flush(): Promise<void> {
    this.rules.check('flush', 0, 0);
    await this.inner.flush();
  }
}

/** The options of the image below (`image.*` with the prefix removed) and the filter's own rules. */
export async function blkdebugParts(options: Readonly<Record<string, string>>): Promise<{
  inner: Record<string, string>;
  innerFormat?: string;
  rules: BlkdebugRules;
}> {
  const inner: Record<string, string> = {};
  let innerFormat: string | undefined;
  for (const [k, v] of Object.entries(options)) {
    if (!k.startsWith('image.')) continue;
    const key = k.slice('image.'.length);
    if (key === 'driver') innerFormat = v;
    else if (key === 'file.driver' || key === 'file.filename' || key === 'file' || key === 'filename') continue;
    else inner[key] = v;
  }
  const rules = [
    ...(options['config'] !== undefined ? await loadConfigRules(options['config']) : []),
    ...rulesFromOptions(options),
  ];
  return { inner, ...(innerFormat !== undefined ? { innerFormat } : {}), rules: new BlkdebugRules(rules) };
}
