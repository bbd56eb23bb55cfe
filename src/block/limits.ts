/**
 * Limits that keep vdisk safe on hostile images and bounded in memory. Each is named here with the
 * reason for its value, and each has a test that feeds an input crossing it.
 */

/** Largest single request a format sees; bigger requests are split so buffers stay bounded. */
export const MAX_REQUEST_BYTES = 32 << 20;

/**
 * Deepest backing chain vdisk opens. Real chains are a handful deep (OpenStack/Proxmox snapshot
 * chains rarely pass 100); qemu itself allows about 16 nested opens per path before stack issues.
 */
export const MAX_BACKING_CHAIN_DEPTH = 256;

/** Bytes read from the head of a file to probe its format (qemu reads 2048). */
export const PROBE_BYTES = 2048;

/** Largest virtual size any image may claim (qemu's limit: INT64_MAX rounded to sectors), kept < 2^53. */
export const MAX_IMAGE_SIZE = Number.MAX_SAFE_INTEGER - 511;
