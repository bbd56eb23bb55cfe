/** qcow2: reading and writing come with the qcow2 engine (issue P2); until then opening says so. */
import { VdiskError } from '../../block/errors.js';
import type { FormatDriver } from '../../block/driver.js';

export const qcow2Driver: FormatDriver = {
  name: 'qcow2',
  async open(_proto, ctx) {
    throw new VdiskError('unsupported', 'FORMAT_UNSUPPORTED', `vdisk does not support the 'qcow2' format yet`, { path: ctx.filename, format: 'qcow2' });
  },
};
