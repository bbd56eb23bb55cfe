/** The vdisk library: the same engine as the CLI, as typed async functions. */
export { VdiskError, type ErrorKind, type ErrorContext } from './block/errors.js';
export { openImage, openLayer, probeFormat, type OpenOptions } from './block/open.js';
export { Image, type ChainStatus } from './block/image.js';
export type { FormatDriver, FormatLayer, LayerStatus, LayerInfo, OpenContext, JsonValue, JsonObject } from './block/driver.js';
export type { Protocol } from './protocols/types.js';
export { FORMATS } from './formats/index.js';
export { VDISK_VERSION, QEMU_COMPAT_VERSION } from './version.js';
