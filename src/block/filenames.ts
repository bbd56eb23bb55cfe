/**
 * Filenames as qemu reads them: a prefix before the first ':' that comes before any '/' names a
 * protocol ("file:a:b.qcow2", "nbd:...", "json:{...}"); relative backing names are joined to the
 * overlay's name as written (qemu's path_combine), never normalized.
 */
import { VdiskError } from './errors.js';

/** Protocol prefixes qemu 7.2's block drivers register; any other prefix is "Unknown protocol". */
const QEMU_PROTOCOLS = new Set([
  'file', 'host_device', 'host_cdrom', 'json', 'nbd', 'nbd+tcp', 'nbd+unix', 'http', 'https', 'ftp', 'ftps', 'ssh',
  'gluster', 'gluster+tcp', 'gluster+unix', 'gluster+rdma', 'iscsi', 'iser', 'nfs', 'rbd', 'fat', 'null-co', 'null-aio',
  'blkdebug', 'blkverify',
]);

/**
 * Every block driver qemu-img 7.2 lists in --help: qemu takes any of them where it looks a driver
 * up by name (rebase -F host_device is recorded as written), formats vdisk cannot read included.
 */
const QEMU_DRIVER_NAMES = new Set(('blkdebug blklogwrites blkverify bochs cloop compress copy-before-write copy-on-read dmg ' +
  'file ftp ftps gluster host_cdrom host_device http https iscsi iser luks nbd nfs null-aio null-co nvme parallels ' +
  'preallocate qcow qcow2 qed quorum raw rbd replication snapshot-access ssh throttle vdi vhdx vmdk vpc vvfat').split(' '));

export function isQemuDriverName(name: string): boolean {
  return QEMU_DRIVER_NAMES.has(name);
}

/** The protocol prefix of a name, if it has one (qemu's path_has_protocol). */
export function protocolPrefix(name: string): string | undefined {
  const m = /^[^:/]*:/.exec(name);
  return m ? m[0].slice(0, -1) : undefined;
}

/**
 * The host path a filename names, for the file protocol: "file:" is stripped, and if what is left
 * would itself look like a protocol, "./" is put before it as qemu does. Unknown prefixes fail as
 * in qemu; prefixes of protocols vdisk does not have are left to fail when opened.
 */
export function hostPath(name: string, forCreate = false): string {
  const proto = protocolPrefix(name);
  if (proto === undefined) return name;
  if (proto === 'file') {
    const rest = name.slice(5);
    // file creation strips the prefix alone; opening rejects an empty name
    if (forCreate) return rest;
    if (rest === '') throw new VdiskError('invalid-argument', 'NO_FILE_NAME', "The 'file' block driver requires a file name", { path: name });
    return protocolPrefix(rest) !== undefined ? `./${rest}` : rest;
  }
  if (!QEMU_PROTOCOLS.has(proto)) {
    throw new VdiskError('invalid-argument', 'UNKNOWN_PROTOCOL', `Unknown protocol '${proto}'`, { path: name });
  }
  return name;
}

/** qemu's path_combine: the overlay's name up to its last '/' (or protocol prefix), then the backing name. */
export function combinePaths(overlay: string, backing: string): string {
  if (backing.startsWith('/') || protocolPrefix(backing) !== undefined) return backing;
  const afterProtocol = protocolPrefix(overlay) !== undefined ? overlay.indexOf(':') + 1 : 0;
  const afterSlash = overlay.lastIndexOf('/') + 1;
  return overlay.slice(0, Math.max(afterProtocol, afterSlash)) + backing;
}
