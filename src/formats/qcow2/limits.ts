/**
 * Hostile-input limits of the qcow2 engine. Each keeps a crafted header from making vdisk read or
 * hold unbounded amounts of metadata; where qemu has the same limit the value is qemu's, so images
 * qemu opens open here too. Each has a test feeding a header that crosses it.
 */

/** Smallest cluster (qemu's MIN_CLUSTER_BITS): 512 bytes, one sector. */
export const MIN_CLUSTER_BITS = 9;

/** Largest cluster (qemu's MAX_CLUSTER_BITS): 2 MiB; every table and buffer sized by clusters stays bounded. */
export const MAX_CLUSTER_BITS = 21;

/** Widest refcount entry (the spec's refcount_order limit): 2^6 = 64 bits. */
export const MAX_REFCOUNT_ORDER = 6;

/** Largest active L1 table (qemu's QCOW_MAX_L1_SIZE): 32 MiB is 4 Mi entries, an 2 EiB disk at 2 MiB clusters. */
export const MAX_L1_BYTES = 32 << 20;

/** Largest refcount table (qemu's QCOW_MAX_REFTABLE_SIZE): 8 MiB of table addresses 2 EiB at 2 MiB clusters. */
export const MAX_REFCOUNT_TABLE_BYTES = 8 << 20;

/** Most internal snapshots (qemu's QCOW_MAX_SNAPSHOTS); more is a crafted header. */
export const MAX_SNAPSHOTS = 65536;

/** Bytes of the whole snapshot table (qemu's QCOW_MAX_SNAPSHOTS_SIZE): 1 KiB for each possible snapshot. */
export const MAX_SNAPSHOT_TABLE_BYTES = 1024 * MAX_SNAPSHOTS;

/** Extra data of one snapshot entry (qemu's QCOW_MAX_SNAPSHOT_EXTRA_DATA); the spec defines 24 bytes. */
export const MAX_SNAPSHOT_EXTRA_BYTES = 1024;

/** Longest backing file name the header may carry (the spec's limit; qemu's "Backing file name too long"). */
export const MAX_BACKING_NAME_BYTES = 1023;

/** Longest backing format name (qemu keeps it in a 16-byte buffer). */
export const MAX_BACKING_FORMAT_BYTES = 15;

/** Bitmaps in the bitmaps extension (qemu's QCOW2_MAX_BITMAPS). */
export const MAX_BITMAPS = 65535;

/** Size of the bitmap directory (qemu's QCOW2_MAX_BITMAP_DIRECTORY_SIZE: 1 KiB per bitmap). */
export const MAX_BITMAP_DIRECTORY_BYTES = 1024 * MAX_BITMAPS;

/** Memory for cached L2 tables; the cache holds at least a few tables whatever the cluster size. */
export const L2_CACHE_BYTES = 32 << 20;

/** Memory for cached refcount blocks. */
export const REFCOUNT_CACHE_BYTES = 4 << 20;

/** Bits of one persistent bitmap in bytes (qemu's BME_MAX_PHYS_SIZE): 512 MiB, held in memory to change it. */
export const MAX_BITMAP_DATA_BYTES = 0x20000000;

/** Entries of one bitmap table (qemu's BME_MAX_TABLE_SIZE). */
export const MAX_BITMAP_TABLE_ENTRIES = 0x8000000;

/** Longest bitmap name (qemu's BME_MAX_NAME_SIZE). */
export const MAX_BITMAP_NAME_BYTES = 1023;
