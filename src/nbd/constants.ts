/**
 * Numbers of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md, "fixed newstyle" negotiation,
 * simple and structured replies) and the limits vdisk puts on what a server may send.
 *
 * Every limit against a hostile server is a named constant here with its reason and a test
 * (test/unit/nbd/).
 */

/** "NBDMAGIC": the first eight bytes a server sends. */
export const NBD_INIT_MAGIC = 0x4e42444d41474943n;
/** "IHAVEOPT": newstyle greeting magic and the magic in front of every option request. */
export const NBD_OPTS_MAGIC = 0x49484156454f5054n;
/** Oldstyle servers send this after NBDMAGIC (unsupported by qemu 7.2 too). */
export const NBD_CLISERV_MAGIC = 0x00420281861253n;
/** Magic in front of every option reply. */
export const NBD_REP_MAGIC = 0x0003e889045565a9n;

export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// handshake flags (server) and client flags
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

// options
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;

// option reply types (errors have bit 31 set; written out: `|` would make them negative int32s)
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
export const NBD_REP_FLAG_ERROR = 0x80000000;
export const NBD_REP_ERR_UNSUP = 0x80000001;
export const NBD_REP_ERR_POLICY = 0x80000002;
export const NBD_REP_ERR_INVALID = 0x80000003;
export const NBD_REP_ERR_PLATFORM = 0x80000004;
export const NBD_REP_ERR_TLS_REQD = 0x80000005;
export const NBD_REP_ERR_UNKNOWN = 0x80000006;
export const NBD_REP_ERR_SHUTDOWN = 0x80000007;
export const NBD_REP_ERR_BLOCK_SIZE_REQD = 0x80000008;
export const NBD_REP_ERR_TOO_BIG = 0x80000009;

// NBD_REP_INFO types
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

// transmission flags
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_ROTATIONAL = 1 << 4;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
export const NBD_FLAG_SEND_RESIZE = 1 << 9;
export const NBD_FLAG_SEND_CACHE = 1 << 10;
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11;

// commands and command flags
export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_CACHE = 5;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_BLOCK_STATUS = 7;
export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

// structured reply chunks
export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
export const NBD_REPLY_TYPE_ERROR = (1 << 15) | 1;
export const NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) | 2;

// base:allocation status bits (x-dirty-bitmap contexts are read through the same two bits, as qemu does)
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;

export const BASE_ALLOCATION = 'base:allocation';

/** Error values on the wire and the errno names they stand for. */
export const NBD_ERRNO: Readonly<Record<number, string>> = {
  1: 'EPERM', 5: 'EIO', 12: 'ENOMEM', 22: 'EINVAL', 28: 'ENOSPC', 75: 'EOVERFLOW', 95: 'ENOTSUP', 108: 'ESHUTDOWN',
};

/** The TCP port qemu uses when a name gives none. */
export const NBD_DEFAULT_PORT = 10809;

// ---- limits against hostile servers ----

/**
 * Largest option reply payload vdisk accepts during the handshake. Real replies are an export name
 * and a description (each at most NBD_MAX_STRING_BYTES) or a few fixed fields; qemu's own client
 * refuses more than 32 MiB, but nothing legitimate comes near 64 KiB + headers.
 */
export const MAX_OPTION_REPLY_BYTES = 64 * 1024 + 1024;
/** Longest string (export name, description, context name, error message) the protocol allows: 4096. */
export const NBD_MAX_STRING_BYTES = 4096;
/** Option replies accepted for one option before the server is called broken (a server looping on INFO). */
export const MAX_OPTION_REPLIES = 1024;
/**
 * Largest payload of a structured BLOCK_STATUS chunk. Servers send a few hundred descriptors per
 * reply; 1 MiB (131071 descriptors) bounds the allocation a hostile length can cause.
 */
export const MAX_BLOCK_STATUS_CHUNK_BYTES = 1 << 20;
/** Largest error chunk: the error, a message of at most NBD_MAX_STRING_BYTES and an offset. */
export const MAX_ERROR_CHUNK_BYTES = 4 + 2 + NBD_MAX_STRING_BYTES + 8;
/**
 * Largest request vdisk sends, whatever the server allows: qemu's client default (32 MiB), which
 * also bounds the buffer of one read reply.
 */
export const MAX_NBD_REQUEST_BYTES = 32 << 20;
/** Requests in flight on one connection (qemu's client keeps 16). */
export const MAX_IN_FLIGHT = 16;
/** Connections opened to a server that advertises NBD_FLAG_CAN_MULTI_CONN (nbdcopy uses 4). */
export const MAX_CONNECTIONS = 4;
/**
 * Bytes the receiver buffers beyond what it has been asked for before it stops reading the socket:
 * a server streaming garbage fills this much memory at most.
 */
export const MAX_UNREAD_BYTES = 4 << 20;
