/** vdisk's own version and the qemu-img release whose behaviour it reproduces. */
export const VDISK_VERSION = '0.1.0';
export const QEMU_COMPAT_VERSION = '7.2.22';
