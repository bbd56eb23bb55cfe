/*
 * vdisk's native helper: the few system calls Node's fs does not expose.
 *   extent(fd, offset, length)   -> { length, data }   lseek(SEEK_DATA/SEEK_HOLE)
 *   fallocate(fd, mode, offset, length)                 posix preallocation
 *   zeroRange(fd, offset, length, punch) -> bool        FALLOC_FL_PUNCH_HOLE / FALLOC_FL_ZERO_RANGE
 *   blockDeviceSize(fd) -> number                       BLKGETSIZE64
 *   copyFileRange(fdIn, offIn, fdOut, offOut, len) -> n  copy_file_range (convert -C); 0 at EOF
 *   ofdLocks() -> bool                                  whether F_OFD_* locks work here
 *   lockByte(fd, offset, ofd, lock)                     shared lock / unlock of one byte
 *   testByte(fd, offset, ofd) -> bool                   another open file holds a lock on it
 * Node-API only, so one build loads in every Node version >= 22.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static napi_value throw_errno(napi_env env, const char *op, int err) {
  char msg[128];
  snprintf(msg, sizeof msg, "%s: %s", op, strerror(err));
  napi_value code, message, error;
  const char *name = err == ENOSPC ? "ENOSPC" : err == EOPNOTSUPP ? "EOPNOTSUPP" : err == EFBIG ? "EFBIG"
                   : err == EINVAL ? "EINVAL" : err == EBADF ? "EBADF" : err == EIO ? "EIO" : "EIO";
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_set_named_property(env, error, "code", code);
  napi_value num;
  napi_create_int32(env, err, &num);
  napi_set_named_property(env, error, "errno", num);
  napi_throw(env, error);
  return NULL;
}

static bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "wrong number of arguments");
    return false;
  }
  return true;
}

static bool num_i64(napi_env env, napi_value v, int64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected a number");
    return false;
  }
  *out = (int64_t)d;
  return true;
}

/* One run at offset: a hole reads {data:false}; at or past EOF the rest is reported as a hole. */
static napi_value extent(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int64_t fd, off, len;
  if (!get_args(env, info, 3, argv) || !num_i64(env, argv[0], &fd) || !num_i64(env, argv[1], &off) ||
      !num_i64(env, argv[2], &len))
    return NULL;
  bool data = true;
  int64_t run = len;
  off_t d = lseek((int)fd, off, SEEK_DATA);
  if (d < 0) {
    if (errno == ENXIO) { /* no data at or after off: a hole to EOF (and beyond) */
      data = false;
    } else if (errno != EINVAL && errno != EOPNOTSUPP) {
      return throw_errno(env, "lseek(SEEK_DATA)", errno);
    }
  } else if (d > off) {
    data = false;
    run = d - off;
  } else {
    off_t h = lseek((int)fd, off, SEEK_HOLE);
    if (h < 0) {
      if (errno != ENXIO && errno != EINVAL && errno != EOPNOTSUPP) return throw_errno(env, "lseek(SEEK_HOLE)", errno);
    } else if (h > off) {
      run = h - off;
    }
  }
  if (run > len) run = len;
  if (run <= 0) run = len;
  napi_value obj, vlen, vdata;
  napi_create_object(env, &obj);
  napi_create_double(env, (double)run, &vlen);
  napi_get_boolean(env, data, &vdata);
  napi_set_named_property(env, obj, "length", vlen);
  napi_set_named_property(env, obj, "data", vdata);
  return obj;
}

static napi_value do_fallocate(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int64_t fd, mode, off, len;
  if (!get_args(env, info, 4, argv) || !num_i64(env, argv[0], &fd) || !num_i64(env, argv[1], &mode) ||
      !num_i64(env, argv[2], &off) || !num_i64(env, argv[3], &len))
    return NULL;
  int r;
  do {
    r = fallocate((int)fd, (int)mode, off, len);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return throw_errno(env, "fallocate", errno);
  return NULL;
}

static napi_value zero_range(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int64_t fd, off, len;
  bool punch;
  if (!get_args(env, info, 4, argv) || !num_i64(env, argv[0], &fd) || !num_i64(env, argv[1], &off) ||
      !num_i64(env, argv[2], &len))
    return NULL;
  napi_get_value_bool(env, argv[3], &punch);
  int r = -1;
  if (punch) r = fallocate((int)fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
  if (r < 0) r = fallocate((int)fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len);
  napi_value res;
  if (r < 0) {
    if (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL) {
      napi_get_boolean(env, false, &res);
      return res;
    }
    return throw_errno(env, "fallocate", errno);
  }
  napi_get_boolean(env, true, &res);
  return res;
}

static napi_value block_device_size(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t fd;
  if (!get_args(env, info, 1, argv) || !num_i64(env, argv[0], &fd)) return NULL;
  uint64_t size = 0;
  if (ioctl((int)fd, BLKGETSIZE64, &size) < 0) return throw_errno(env, "ioctl(BLKGETSIZE64)", errno);
  napi_value v;
  napi_create_double(env, (double)size, &v);
  return v;
}

/* One copy_file_range call with explicit offsets (the descriptors' positions are not moved). */
static napi_value copy_file_range_js(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  int64_t fd_in, off_in, fd_out, off_out, len;
  if (!get_args(env, info, 5, argv) || !num_i64(env, argv[0], &fd_in) || !num_i64(env, argv[1], &off_in) ||
      !num_i64(env, argv[2], &fd_out) || !num_i64(env, argv[3], &off_out) || !num_i64(env, argv[4], &len))
    return NULL;
  off64_t in = off_in, out = off_out;
  ssize_t r;
  do {
    r = copy_file_range((int)fd_in, &in, (int)fd_out, &out, (size_t)len, 0);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return throw_errno(env, "copy_file_range", errno);
  napi_value v;
  napi_create_double(env, (double)r, &v);
  return v;
}

/*
 * Image locks are one-byte shared (F_RDLCK) locks. OFD locks belong to the open file description,
 * so two opens of one file conflict even inside one process, exactly as between processes; the
 * POSIX fallback (ofd false) belongs to the process and is only used when OFD locks are missing.
 */
static int lock_cmd(bool ofd, bool test) {
#ifdef F_OFD_SETLK
  if (ofd) return test ? F_OFD_GETLK : F_OFD_SETLK;
#endif
  return test ? F_GETLK : F_SETLK;
}

static napi_value ofd_locks(napi_env env, napi_callback_info info) {
  (void)info;
  bool ok = false;
#ifdef F_OFD_GETLK
  int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (fd >= 0) {
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    ok = fcntl(fd, F_OFD_GETLK, &fl) == 0;
    close(fd);
  }
#endif
  napi_value v;
  napi_get_boolean(env, ok, &v);
  return v;
}

static napi_value lock_byte(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int64_t fd, off;
  bool ofd, lock;
  if (!get_args(env, info, 4, argv) || !num_i64(env, argv[0], &fd) || !num_i64(env, argv[1], &off)) return NULL;
  napi_get_value_bool(env, argv[2], &ofd);
  napi_get_value_bool(env, argv[3], &lock);
  struct flock fl = {.l_type = lock ? F_RDLCK : F_UNLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1};
  int r;
  do {
    r = fcntl((int)fd, lock_cmd(ofd, false), &fl);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return throw_errno(env, lock ? "lock" : "unlock", errno);
  return NULL;
}

static napi_value test_byte(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int64_t fd, off;
  bool ofd;
  if (!get_args(env, info, 3, argv) || !num_i64(env, argv[0], &fd) || !num_i64(env, argv[1], &off)) return NULL;
  napi_get_value_bool(env, argv[2], &ofd);
  /* asking for an exclusive lock finds any other holder's shared lock */
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1};
  int r;
  do {
    r = fcntl((int)fd, lock_cmd(ofd, true), &fl);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return throw_errno(env, "test lock", errno);
  napi_value v;
  napi_get_boolean(env, fl.l_type != F_UNLCK, &v);
  return v;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"extent", NULL, extent, NULL, NULL, NULL, napi_default, NULL},
    {"fallocate", NULL, do_fallocate, NULL, NULL, NULL, napi_default, NULL},
    {"zeroRange", NULL, zero_range, NULL, NULL, NULL, napi_default, NULL},
    {"blockDeviceSize", NULL, block_device_size, NULL, NULL, NULL, napi_default, NULL},
    {"copyFileRange", NULL, copy_file_range_js, NULL, NULL, NULL, napi_default, NULL},
    {"ofdLocks", NULL, ofd_locks, NULL, NULL, NULL, napi_default, NULL},
    {"lockByte", NULL, lock_byte, NULL, NULL, NULL, napi_default, NULL},
    {"testByte", NULL, test_byte, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
