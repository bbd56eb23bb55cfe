/**
 * The contract between the block layer and the formats.
 *
 * A format is a `FormatDriver` (static: probe, open, create) that opens a `FormatLayer` (one
 * image file of one format on top of one Protocol). A layer answers only for itself: where its
 * own data is, what its header says. The generic layer (src/block/image.ts) checks every request
 * once before a layer sees it, emulates capabilities a layer lacks, and owns backing chains; a
 * layer reads unallocated ranges through the `BackingReader` it was given, never opening files
 * of its own accord except through `OpenContext.openFile`.
 *
 * New methods are added as optional members at the end, and every driver migrates in the same change.
 */
import type { Preallocation, Protocol } from '../protocols/types.js';
import type { StatusRuns } from './status-runs.js';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** What a layer says about one run starting at the queried offset. */
export interface LayerStatus {
  /** Bytes from the queried offset that share this status; at least 1, at most the queried length. */
  length: number;
  /** false: this layer does not define these bytes; ask the backing file (or read zeros without one). */
  allocated: boolean;
  /** The bytes read as zeros (meaningful when allocated). */
  zero: boolean;
  /** The bytes are stored as data in this layer (false for zero clusters and holes). */
  data: boolean;
  /** Where the bytes are in `hostFile` (for `map`), when they are stored uncompressed and plainly. */
  hostOffset?: number;
  /** The file holding the data, when it is not the layer's own file (external data files, extents). */
  hostFile?: string;
  /** Stored compressed (never has a hostOffset). */
  compressed?: boolean;
  /**
   * false: qemu does not ask the file below whether this data sits in a hole, so it stays data
   * (qcow2 without metadata preallocation). Absent: the file is asked.
   */
  askHost?: boolean;
  /**
   * Unallocated, and not known to read as zeros even without a backing file (an NBD hole that is
   * not a zero run): qemu adds "zero" to unallocated runs only for formats that can have a backing.
   */
  unknownContents?: boolean;
}

/** Reads a range of the backing chain below a layer; zeros where there is no backing or past its end. */
export interface BackingReader {
  read(buf: Uint8Array, offset: number): Promise<void>;
  /** Whether anything is below this layer. */
  readonly present: boolean;
}

export interface SnapshotInfo {
  id: string;
  name: string;
  vmStateSize: number;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: number;
  icount?: number;
}

/** A layer's own description, for `info`; the generic layer adds filename, sizes, chain fields. */
export interface LayerInfo {
  clusterSize?: number;
  encrypted?: boolean;
  dirty?: boolean;
  /** Backing file name exactly as stored in the image, and its format if recorded. */
  backingFile?: string;
  backingFormat?: string;
  /** `format-specific` of qemu-img info: type and an ordered data object (printed generically). */
  formatSpecific?: { type: string; data: JsonObject };
  snapshots?: SnapshotInfo[];
}

export interface TruncateOptions {
  prealloc: Preallocation;
  /** Shrinking was explicitly allowed (--shrink). */
  shrink: boolean;
  /**
   * The grown area must read as zeros although a backing file reaches into it (qemu's
   * BDRV_REQ_ZERO_WRITE). A layer that can have a backing file must honour it.
   */
  zeroWrite?: boolean;
}

/** Internal snapshots (qcow2). Errors are VdiskErrors worded as qemu-img's cause text. */
export interface SnapshotOps {
  /** Create a snapshot of the current state named `name` (id assigned by the format). */
  create(name: string, date: { sec: number; nsec: number }): Promise<void>;
  /** Revert the active layer to the snapshot with this id or name. */
  apply(idOrName: string): Promise<void>;
  /** Delete the snapshot with this id or name; `report` gets what qemu prints on the way (unprefixed). */
  delete(idOrName: string, report?: (text: string) => void): Promise<void>;
}

export type RepairMode = 'none' | 'leaks' | 'all';

/** What a consistency check found (and fixed), in qemu's terms. */
export interface CheckResult {
  corruptions: number;
  leaks: number;
  /** Errors that kept the check itself from completing (I/O errors, memory). */
  checkErrors: number;
  corruptionsFixed: number;
  leaksFixed: number;
  /** Offset just past the last byte the image uses in its file (0: unknown). */
  imageEndOffset: number;
  totalClusters: number;
  allocatedClusters: number;
  fragmentedClusters: number;
  compressedClusters: number;
  /** Human-readable findings, printed to stderr as qemu-img does ("Leaked cluster 5 refcount=1 reference=0"). */
  messages: string[];
  /**
   * The check could not complete: `messages` are what it found until then, and qemu-img prints no
   * report but "Check failed: <message>" (exit 1).
   */
  failure?: Error;
}

/** Clusters compressed ahead of their write (FormatLayer.compressClusters). */
export interface CompressedClusters {
  /** The memory of the buffer given to compressClusters, for reuse (its bytes were consumed). */
  data: Uint8Array;
  /**
   * Per cluster, in order: >= 0, the length of its compressed bytes; -1: it does not shrink and
   * is stored plainly (its bytes follow as they are); -2: left out (nothing in `packed`).
   */
  lengths: Int32Array;
  /** The clusters' bytes end to end as `lengths` says. */
  packed: Uint8Array;
}

export interface FormatLayer {
  /** Guest-visible size in bytes. */
  readonly size: number;
  /** Preferred request granularity (qcow2 cluster size...); the copy engine aligns to it. */
  readonly granularity?: number;
  /** The backing file named in the header (before resolution), if any. */
  readonly backing?: { filename: string; format?: string };

  read(buf: Uint8Array, offset: number): Promise<void>;
  blockStatus(offset: number, length: number): Promise<LayerStatus>;
  info(): Promise<LayerInfo>;
  close(): Promise<void>;

  write?(buf: Uint8Array, offset: number): Promise<void>;
  writeZeroes?(offset: number, length: number, mayUnmap: boolean): Promise<void>;
  discard?(offset: number, length: number): Promise<void>;
  flush?(): Promise<void>;
  truncate?(size: number, opts: TruncateOptions): Promise<void>;
  /** Consistency check (and repair when asked and opened read-write). Absent: the format has no checks. */
  check?(repair: RepairMode): Promise<CheckResult>;
  /**
   * Write whole clusters compressed (convert -c); `offset` and length are cluster-aligned (the
   * last cluster may be short at the image end). `pre`: the same clusters from compressClusters.
   */
  writeCompressed?(buf: Uint8Array, offset: number, pre?: CompressedClusters): Promise<void>;
  /**
   * Compress whole clusters as writeCompressed would, without touching the image (safe to run for
   * many requests at once, ahead of their in-order writes); `skip[i]` nonzero leaves cluster i
   * out. `buf`'s bytes are consumed: its memory may move to another thread until the promise
   * settles (the caller must not touch it meanwhile), and is the result's `data` afterwards.
   */
  compressClusters?(buf: Uint8Array, skip?: Uint8Array): Promise<CompressedClusters>;
  /** Internal snapshot operations; listing comes from info().snapshots. */
  readonly snapshots?: SnapshotOps;
  /** Unallocate everything so the backing chain shows through (commit empties the top this way). */
  makeEmpty?(): Promise<void>;
  /**
   * Change format options of an existing image (qemu-img amend); values already checked against
   * amendOptions. `hooks` (optional) receive progress and the messages qemu prints on the way.
   */
  amend?(values: Readonly<Record<string, string>>, force: boolean, hooks?: AmendHooks): Promise<void>;
  /**
   * Record another backing file name (stored as given) and format in the image, or none (null
   * or ''); only the header changes (qemu-img rebase -u, and the last step of a safe rebase).
   */
  changeBacking?(filename: string | null, format: string | null): Promise<void>;
  /** Persistent dirty bitmaps (qcow2); absent: the format cannot store any. */
  readonly bitmaps?: BitmapOps;
  /**
   * false: a freshly created image of this layer does not read as zeros (qemu's has_zero_init),
   * so a copy must write zero ranges too (encrypted payloads, preallocated encrypted clusters).
   */
  readonly zeroInit?: boolean;
  /**
   * blockStatus's answer when it needs no I/O and no wait (the tables are cached, nothing is in
   * flight), else undefined: then ask blockStatus. A walk over many short runs (map) costs a
   * promise chain per run otherwise. May throw what blockStatus would reject with.
   */
  blockStatusSync?(offset: number, length: number): LayerStatus | undefined;
  /**
   * Many blockStatusSync answers at once: consecutive runs from `offset` into `out` (from index 0,
   * at most `out.limit` runs, at most `length` bytes in all; RUN_* flags, out.hostFile set as
   * LayerStatus.hostFile would be), as far as they need no I/O and no wait. Returns `out.count`;
   * 0: nothing without I/O, ask blockStatus. May throw what blockStatus would reject with.
   */
  blockStatusRunsSync?(offset: number, length: number, out: StatusRuns): number;
}

/** One persistent dirty bitmap as the image stores it. */
export interface PersistentBitmap {
  name: string;
  granularity: number;
  /** Records guest writes (qcow2's "auto" flag). */
  enabled: boolean;
  /** Not saved cleanly (qcow2's "in-use" flag): its bits cannot be trusted. */
  inconsistent: boolean;
}

/** A bitmap's bits: bit i (LSB first in each byte) covers guest bytes [i * granularity, (i + 1) * granularity) of `size`. */
export interface BitmapBits {
  granularity: number;
  size: number;
  bits: Uint8Array;
}

/**
 * Persistent dirty bitmap storage of one layer. Generic rules (names exist, inconsistent bitmaps
 * are not used, sizes match) are the block layer's (src/block/bitmaps.ts); a layer enforces only
 * what its format cannot store, worded as qemu's reason.
 */
export interface BitmapOps {
  /** The image can store persistent bitmaps at all (qcow2 v3). */
  readonly supported: boolean;
  /** Granularity of a bitmap added without one. */
  readonly defaultGranularity: number;
  /** Bitmaps in the image's order. */
  list(): PersistentBitmap[];
  /** Throws the format's reason when a new bitmap with this name and granularity cannot be stored. */
  checkNew(name: string, granularity: number): void;
  add(name: string, granularity: number, enabled: boolean): Promise<void>;
  remove(name: string): Promise<void>;
  clear(name: string): Promise<void>;
  setEnabled(name: string, enabled: boolean): Promise<void>;
  read(name: string): Promise<BitmapBits>;
  /** Set every bit of bitmap `name` whose range overlaps a set bit of `src` (same size, any granularity). */
  merge(name: string, src: BitmapBits): Promise<void>;
}

/** What an amend reports while it runs (qemu-img prints both). */
export interface AmendHooks {
  /** Work done of the whole amend, as qemu's status callback reports it. */
  progress?(done: number, total: number): void;
  /** A message qemu prints to stderr during the operation (repair findings, warnings), without prefix. */
  message?(text: string): void;
  /** An error qemu reports on its own line (with the program's prefix) before the one that fails the amend. */
  error?(text: string): void;
}

/** Named secrets from `--object secret,...`, looked up by id. */
export interface SecretStore {
  get(id: string): Uint8Array | undefined;
}

export interface OpenContext {
  readonly filename: string;
  readonly readOnly: boolean;
  /** Driver options (from `--image-opts`, `json:` or `-o`), dotted keys, e.g. `encrypt.key-secret`. */
  readonly options: Readonly<Record<string, string>>;
  readonly secrets: SecretStore;
  /** The chain below; reads zeros until the generic layer links the real backing image. */
  readonly backing: BackingReader;
  /** Open another file the image names (extent, data file) relative to the image's directory. */
  openFile(name: string, readOnly: boolean): Promise<Protocol>;
  /**
   * Only metadata will be asked for (qemu's BDRV_O_NO_IO, as `info` opens): a layer may skip
   * unlocking encryption keys and opening data files, so they are not required.
   */
  readonly noIo?: boolean;
  /**
   * Opened for a consistency check (qemu's BDRV_O_CHECK): a repair may open read-write an image
   * the format would otherwise refuse to write (qcow2's corrupt bit), to repair it.
   */
  readonly check?: boolean;
}

export type CreateOptionType = 'size' | 'bool' | 'string' | 'number';

/** One `-o` option of `create`/`amend`, in the order `-o help` lists them. */
export interface CreateOptionSpec {
  name: string;
  type: CreateOptionType;
  help: string;
  /** Default value shown in `-o help`, if qemu shows one. */
  def?: string;
}

export type CreateOptionValues = Readonly<Record<string, string>>;

export interface CreateContext {
  readonly filename: string;
  /** Virtual size in bytes (already parsed and checked). */
  readonly size: number;
  readonly options: CreateOptionValues;
  readonly secrets: SecretStore;
  /** Create (truncating) and open the file the image lives in. */
  createFile(name: string): Promise<Protocol>;
  /** Open the file just created again, read-write, through its protocol (file or nbd). */
  reopenFile?(name: string): Promise<Protocol>;
}

/** What `measure` asks a format: the size of a new image holding this content. */
export interface MeasureInput {
  /** Virtual size of the new image. */
  size: number;
  /** Create options for the new image (-o). */
  options: CreateOptionValues;
  /** Bytes of guest data that would be allocated (from the source's block status); undefined with --size. */
  allocatedBytes?: number;
  /**
   * Bytes the source's persistent dirty bitmaps need, when the source can carry them (qemu prints
   * "bitmaps size" then, 0 when it has none); undefined otherwise.
   */
  sourceBitmapBytes?: number;
  /** Allocation of the source per cluster-aligned run, when measuring from an image. */
  extents?: AsyncIterable<{ offset: number; length: number; data: boolean; zero: boolean }>;
  /** The source's persistent bitmaps (with sourceBitmapBytes): a target that can carry them sizes them. */
  sourceBitmaps?: ReadonlyArray<{ name: string; granularity: number }>;
}

export interface MeasureResult {
  required: number;
  fullyAllocated: number;
  bitmaps?: number;
}

export interface FormatDriver {
  readonly name: string;
  open(proto: Protocol, ctx: OpenContext): Promise<FormatLayer>;
  /** `-o` options of create, in the order `-o help` lists them. */
  readonly createOptions?: readonly CreateOptionSpec[];
  /**
   * Option names in the order qemu-img's "Formatting 'x', fmt=... " line prints them; an option
   * shows when given or when its spec has a `def`.
   */
  readonly createSummary?: readonly string[];
  create?(ctx: CreateContext): Promise<void>;
  measure?(input: MeasureInput): Promise<MeasureResult>;
  /** `-o` options `amend` accepts, in `-o help` order (absent: the format cannot amend). */
  readonly amendOptions?: readonly CreateOptionSpec[];
  /** Images of this format can take compressed writes (qemu-img convert -c). */
  readonly supportsCompression?: boolean;
}
