/**
 * Formats vdisk recognizes but cannot read yet: detection runs ahead of support, so such an image
 * is named correctly and refused clearly instead of being read as raw bytes.
 */
import { VdiskError } from '../block/errors.js';
import type { FormatDriver } from '../block/driver.js';

export function unsupportedDriver(name: string): FormatDriver {
  return {
    name,
    async open(_proto, ctx) {
      throw new VdiskError('unsupported', 'FORMAT_UNSUPPORTED', `vdisk does not support the '${name}' format yet`,
        { path: ctx.filename, format: name });
    },
  };
}
