/**
 * `--help` text. The command syntax lines come from the command table; the parameter prose is
 * qemu-img 7.2's, so scripts and people reading it see the same words.
 */
import { COMMANDS } from './table.js';
import { FORMATS } from '../formats/index.js';
import { VDISK_VERSION, QEMU_COMPAT_VERSION } from '../version.js';

const OPTIONS_TEXT = `    '-h', '--help'       display this help and exit
    '-V', '--version'    output version information and exit
    '-T', '--trace'      [[enable=]<pattern>][,events=<file>][,file=<file>]
                         specify tracing options

`;

const PARAMETERS_TEXT = `Command parameters:
  'filename' is a disk image filename
  'objectdef' is a QEMU user creatable object definition. See the qemu(1)
    manual page for a description of the object properties. The most common
    object type is a 'secret', which is used to supply passwords and/or
    encryption keys.
  'fmt' is the disk image format. It is guessed automatically in most cases
  'cache' is the cache mode used to write the output disk image, the valid
    options are: 'none', 'writeback' (default, except for convert), 'writethrough',
    'directsync' and 'unsafe' (default for convert)
  'src_cache' is the cache mode used to read input disk images, the valid
    options are the same as for the 'cache' option
  'size' is the disk image size in bytes. Optional suffixes
    'k' or 'K' (kilobyte, 1024), 'M' (megabyte, 1024k), 'G' (gigabyte, 1024M),
    'T' (terabyte, 1024G), 'P' (petabyte, 1024T) and 'E' (exabyte, 1024P)  are
    supported. 'b' is ignored.
  'output_filename' is the destination disk image filename
  'output_fmt' is the destination format
  'options' is a comma separated list of format specific options in a
    name=value format. Use -o help for an overview of the options supported by
    the used format
  'snapshot_param' is param used for internal snapshot, format
    is 'snapshot.id=[ID],snapshot.name=[NAME]', or
    '[ID_OR_NAME]'
  '-c' indicates that target image must be compressed (qcow format only)
  '-u' allows unsafe backing chains. For rebasing, it is assumed that old and
       new backing file match exactly. The image doesn't need a working
       backing file before rebasing in this case (useful for renaming the
       backing file). For image creation, allow creating without attempting
       to open the backing file.
  '-h' with or without a command shows this help and lists the supported formats
  '-p' show progress of command (only certain commands)
  '-q' use Quiet mode - do not print any output (except errors)
  '-S' indicates the consecutive number of bytes (defaults to 4k) that must
       contain only zeros for qemu-img to create a sparse image during
       conversion. If the number of bytes is 0, the source will not be scanned for
       unallocated or zero sectors, and the destination image will always be
       fully allocated
  '--output' takes the format in which the output must be done (human or json)
  '-n' skips the target volume creation (useful if the volume is created
       prior to running qemu-img)

Parameters to bitmap subcommand:
  'bitmap' is the name of the bitmap to manipulate, through one or more
       actions from '--add', '--remove', '--clear', '--enable', '--disable',
       or '--merge source'
  '-g granularity' sets the granularity for '--add' actions
  '-b source' and '-F src_fmt' tell '--merge' actions to find the source
       bitmaps from an alternative file

Parameters to check subcommand:
  '-r' tries to repair any inconsistencies that are found during the check.
       '-r leaks' repairs only cluster leaks, whereas '-r all' fixes all
       kinds of errors, with a higher risk of choosing the wrong fix or
       hiding corruption that has already occurred.

Parameters to convert subcommand:
  '--bitmaps' copies all top-level persistent bitmaps to destination
  '-m' specifies how many coroutines work in parallel during the convert
       process (defaults to 8)
  '-W' allow to write to the target out of order rather than sequential

Parameters to snapshot subcommand:
  'snapshot' is the name of the snapshot to create, apply or delete
  '-a' applies a snapshot (revert disk to saved state)
  '-c' creates a snapshot
  '-d' deletes a snapshot
  '-l' lists all snapshots in the given image

Parameters to compare subcommand:
  '-f' first image format
  '-F' second image format
  '-s' run in Strict mode - fail on different image size or sector allocation

Parameters to dd subcommand:
  'bs=BYTES' read and write up to BYTES bytes at a time (default: 512)
  'count=N' copy only N input blocks
  'if=FILE' read from FILE
  'of=FILE' write to FILE
  'skip=N' skip N bs-sized blocks at the start of input

`;

const FILTER_DRIVERS = ['blkdebug', 'quorum'];

export function helpText(prog: string): string {
  const syntax = COMMANDS.filter((c) => !c.extension).map((c) => `  ${c.name} ${c.usage}\n`).join('');
  // the filter drivers qemu-img's option trees can name are listed with the formats, as in qemu
  const formats = [...FORMATS.map((f) => f.name), ...FILTER_DRIVERS].sort().join(' ');
  return (
    `${versionText(prog)}` +
    'Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n' +
    `usage: ${prog} [standard options] command [command options]\n` +
    'QEMU disk image utility\n\n' +
    OPTIONS_TEXT +
    'Command syntax:\n' +
    syntax +
    '\n' +
    PARAMETERS_TEXT +
    `Supported formats: ${formats}\n\n` +
    'vdisk implements these commands in TypeScript; see its README for the extensions.\n'
  );
}

export function versionText(prog: string): string {
  if (prog === 'vdisk') return `vdisk version ${VDISK_VERSION} (compatible with qemu-img ${QEMU_COMPAT_VERSION})\n`;
  return `${prog} version ${QEMU_COMPAT_VERSION} (vdisk ${VDISK_VERSION})\n`;
}
