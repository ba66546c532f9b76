/* safetensors writer and atomic file writing.
 *
 * File layout written by vlm_st_writer_save:
 *   - u64 LE header length N, N a multiple of 8 (the header is padded with
 *     spaces), so the data section starts at a multiple of 8;
 *   - the JSON header: "__metadata__" first (omitted when there is none; keys
 *     sorted by strcmp), then the tensors in data order;
 *   - data order, as in the reference implementation: by item size, largest
 *     first (8, 4, 2, 1 bytes), then by name (strcmp). Every block of a given
 *     item size is a multiple of it, so every tensor is aligned for its dtype;
 *     tensors are contiguous, no padding between them.
 *
 * The writer keeps pointers to the callers' data (no copy) until save. CUDA
 * tensors are staged through a host buffer at save time. The first failing
 * call on a writer is remembered: save then fails with that message without
 * touching the target file, so callers may check once, at save.
 *
 * Atomic writes: a temporary file "<path>.tmp.<host>-<pid>.XXXXXX" in the target's own
 * directory (rename is atomic only within a file system), written, flushed,
 * fsync'ed, closed, renamed over the target, then the directory is fsync'ed so
 * the rename itself is durable. Any failure before the rename removes the
 * temporary file and leaves the old target untouched. The new file gets mode
 * 0666 & ~umask, like a file made by fopen.
 *
 * A signal that ends the process mid-write would leave the (possibly full-size)
 * temporary file behind. So the temporary files open at any moment are listed
 * in a small fixed registry (copies of their paths in static buffers; a slot is
 * claimed and released with lock-free atomics), which vlm_atomic_remove_pending
 * unlinks using nothing but unlink(2): safe in a signal handler.
 * vlm_atomic_cleanup_on_signals installs such handlers for SIGINT, SIGTERM and
 * SIGHUP; programs call it (the vlm command does), the library never does, as
 * an application that embeds it owns its signals. A process killed outright
 * (SIGKILL, a crash) leaves its temporary file: a process's first atomic write into a
 * directory removes those there whose writer ran on this host and is gone (the host and
 * pid in the name; another host's, on a shared file system, are left alone). */
#define _GNU_SOURCE
#include "core/core.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_NAME (64u * 1024u)
#define ST_MAX_DIM 9007199254740992LL /* 2^53: readers refuse dims from here up (JSON doubles) */

size_t vlm_st__utf8_check(const uint8_t *s, size_t n); /* safetensors_read.c */

/* ------------------------------------------------------------------ pending temporary files */
/* Slot states: free, being filled by its owner, holding a path the handler may unlink. */
enum { PENDING_FREE, PENDING_FILLING, PENDING_READY };
#define PENDING_SLOTS 32
#define PENDING_PATH 4096
static _Atomic int g_pending_state[PENDING_SLOTS];
static char g_pending_path[PENDING_SLOTS][PENDING_PATH];

/* Lists tmp; returns its slot + 1 (the vlm_atomic_file's `pending`), or 0 when the path is
 * too long or every slot is taken (the write goes on; only a signal's cleanup misses it). */
static int pending_add(const char *tmp) {
  size_t n = strlen(tmp);
  if (n >= PENDING_PATH) return 0;
  for (int i = 0; i < PENDING_SLOTS; i++) {
    int expect = PENDING_FREE;
    if (atomic_compare_exchange_strong(&g_pending_state[i], &expect, PENDING_FILLING)) {
      memcpy(g_pending_path[i], tmp, n + 1);
      atomic_store(&g_pending_state[i], PENDING_READY);
      return i + 1;
    }
  }
  vlm_log(VLM_LOG_DEBUG, "%s: %d temporary files open: not listed for removal on a signal", tmp, PENDING_SLOTS);
  return 0;
}

static void pending_remove(int slot) {
  if (slot > 0) atomic_store(&g_pending_state[slot - 1], PENDING_FREE);
}

void vlm_atomic_remove_pending(void) {
  int saved = errno;
  for (int i = 0; i < PENDING_SLOTS; i++)
    if (atomic_load(&g_pending_state[i]) == PENDING_READY) unlink(g_pending_path[i]);
  errno = saved;
}

static const int k_cleanup_signals[] = {SIGINT, SIGTERM, SIGHUP};

/* Remove the temporary files, then die of the signal as without the handler (the shell sees
 * 128 + sig): the default action is restored and the signal raised again; it is blocked while
 * the handler runs, so it is delivered as the handler returns. */
static void on_fatal_signal(int sig) {
  vlm_atomic_remove_pending();
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, NULL);
  raise(sig);
}

void vlm_atomic_cleanup_on_signals(void) {
  for (size_t i = 0; i < sizeof k_cleanup_signals / sizeof k_cleanup_signals[0]; i++) {
    int sig = k_cleanup_signals[i];
    struct sigaction old, sa;
    /* A signal the process was started with ignored (nohup, a background job of a script)
     * stays ignored; one some other handler owns stays with it. */
    if (sigaction(sig, NULL, &old) != 0 || old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO)) continue;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t j = 0; j < sizeof k_cleanup_signals / sizeof k_cleanup_signals[0]; j++)
      sigaddset(&sa.sa_mask, k_cleanup_signals[j]);   /* one cleanup at a time */
    sa.sa_flags = SA_RESTART;
    sigaction(sig, &sa, NULL);
  }
}

/* ------------------------------------------------------------------ atomic files */

static mode_t current_umask(void) {
  /* umask() can only be read by setting it, which races with other threads;
   * Linux reports it in /proc/self/status. */
  mode_t m = 022;
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return m;
  char line[256];
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "Umask:", 6)) {
      m = (mode_t)strtoul(line + 6, NULL, 8);
      break;
    }
  fclose(f);
  return m & 0777;
}

static const char *file_kind(mode_t m) {
  return S_ISDIR(m) ? "a directory" : S_ISBLK(m) ? "a block device" : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

/* What path names, for writing: a regular file (or none yet) is replaced through a temporary file;
 * through a symbolic link, the file it points to; a character device or a FIFO (/dev/null, a pipe
 * to another program) is written directly, since renaming over it would replace it with a
 * regular file; anything else is refused. */
static vlm_status open_direct(vlm_atomic_file *af, const char *path, int *direct, char **target) {
  struct stat sb;
  *direct = 0;
  *target = NULL;
  if (lstat(path, &sb) != 0) return VLM_OK;   /* a new file */
  if (S_ISLNK(sb.st_mode)) {
    if (!(*target = realpath(path, NULL)))
      return vlm_error(VLM_ERR_IO, "%s: a symbolic link that does not lead to a file: %s", path, strerror(errno));
    if (stat(*target, &sb) != 0) return vlm_error(VLM_ERR_IO, "%s: %s", *target, strerror(errno));
  }
  if (S_ISREG(sb.st_mode)) return VLM_OK;
  if (!S_ISCHR(sb.st_mode) && !S_ISFIFO(sb.st_mode))
    return vlm_error(VLM_ERR_IO, "%s: exists and is %s: cannot write it", path, file_kind(sb.st_mode));
  FILE *f = fopen(*target ? *target : path, "wb");
  if (!f) return vlm_error(VLM_ERR_IO, "%s: cannot open for writing: %s", path, strerror(errno));
  af->f = f;
  *direct = 1;
  return VLM_OK;
}

/* "<host>-<pid>" of this process, the host name cut to 40 characters of [A-Za-z0-9_-]. */
static void temp_tag(char *tag, size_t n) {
  char host[256] = "";
  if (gethostname(host, sizeof host - 1) != 0 || !host[0]) snprintf(host, sizeof host, "host");
  host[40] = 0;
  for (char *c = host; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_')) *c = '_';
  snprintf(tag, n, "%s-%ld", host, (long)getpid());
}

/* Whether name is "<anything>.tmp.<host>-<pid>.XXXXXX" with host = tag's (tag is
 * "<host>-<pid>"); its pid in *pid. */
static int is_host_temp(const char *nm, const char *tag, long *pid) {
  const char *dash = strrchr(tag, '-');
  if (!dash) return 0;
  const size_t hn = (size_t)(dash - tag), n = strlen(nm);
  if (n < 7 || nm[n - 7] != '.') return 0;
  size_t d = n - 7;   /* the pid's digits end here */
  while (d > 0 && nm[d - 1] >= '0' && nm[d - 1] <= '9') d--;
  if (d == n - 7 || d < 1 || nm[d - 1] != '-') return 0;
  const size_t h = d - 1;   /* the host ends here */
  if (h < hn + 5 || strncmp(nm + h - hn, tag, hn) || strncmp(nm + h - hn - 5, ".tmp.", 5)) return 0;
  *pid = strtol(nm + d, NULL, 10);
  return *pid > 0;
}

/* Remove the temporary files of dir that a process of this host left: "<name>.tmp.<host>-<pid>.
 * XXXXXX" whose pid is no longer running (kill(pid, 0) fails with ESRCH). A directory is swept
 * once per process (a writer putting thousands of files in one folder lists it once). */
static void remove_stale_temps(const char *path, const char *tag) {
  const char *slash = strrchr(path, '/');
  char dir[4096];
  if (slash) {
    size_t dn = (size_t)(slash - path);
    if (dn >= sizeof dir) return;
    memcpy(dir, path, dn);
    dir[dn] = 0;
    if (!dn) snprintf(dir, sizeof dir, "/");
  } else {
    snprintf(dir, sizeof dir, ".");
  }
  enum { SWEPT = 32 };
  static char swept[SWEPT][4096];
  static int next;
  static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&mu);
  int seen = 0;
  for (int i = 0; i < SWEPT && !seen; i++) seen = !strcmp(swept[i], dir);
  if (!seen) {
    snprintf(swept[next], sizeof swept[next], "%s", dir);
    next = (next + 1) % SWEPT;
  }
  pthread_mutex_unlock(&mu);
  if (seen) return;
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  long pid;
  while ((e = readdir(d))) {
    if (!is_host_temp(e->d_name, tag, &pid) || pid == (long)getpid()) continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;   /* running, or not ours to judge */
    char full[8192];
    if ((size_t)snprintf(full, sizeof full, "%s/%s", dir, e->d_name) < sizeof full) unlink(full);
  }
  closedir(d);
}

vlm_status vlm_atomic_open(vlm_atomic_file *af, const char *path) {
  memset(af, 0, sizeof *af);
  if (!path || !path[0]) return vlm_error(VLM_ERR_ARG, "atomic write: empty file path");
  int direct;
  char *target;
  vlm_status ds = open_direct(af, path, &direct, &target);
  if (ds != VLM_OK || direct) {
    free(target);
    if (ds == VLM_OK && !(af->path = strdup(path))) {
      fclose(af->f);
      af->f = NULL;
      return vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
    }
    return ds;
  }
  /* through a link: replace the file it points to, beside it */
  char *dup = target ? target : strdup(path);
  char *tmp = dup ? malloc(strlen(dup) + 96) : NULL;
  if (!tmp) {
    free(dup);
    return vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
  }
  char tag[80];
  temp_tag(tag, sizeof tag);
  remove_stale_temps(dup, tag);
  const char *base = strrchr(dup, '/');
  base = base ? base + 1 : dup;
  /* "<path>.tmp.<host>-<pid>.XXXXXX"; a name too long for that takes the plain "<path>.tmp.XXXXXX" */
  if (strlen(base) + 5 + strlen(tag) + 1 + 6 <= 255) sprintf(tmp, "%s.tmp.%s.XXXXXX", dup, tag);
  else sprintf(tmp, "%s.tmp.XXXXXX", dup);
  int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    vlm_status s = vlm_error(VLM_ERR_IO, "%s: cannot create a temporary file beside it: %s", dup, strerror(errno));
    free(tmp);
    free(dup);
    return s;
  }
  af->pending = pending_add(tmp);
  (void)fchmod(fd, 0666 & ~current_umask()); /* mkstemp makes 0600 */
  FILE *f = fdopen(fd, "wb");
  if (!f) {
    vlm_status s = vlm_error(VLM_ERR_IO, "%s: cannot open a stream on the temporary file: %s", dup, strerror(errno));
    close(fd);
    unlink(tmp);
    pending_remove(af->pending);
    af->pending = 0;
    free(tmp);
    free(dup);
    return s;
  }
  af->f = f;
  af->path = dup;
  af->tmp_path = tmp;
  return VLM_OK;
}

void vlm_atomic_abort(vlm_atomic_file *af) {
  if (!af) return;
  if (af->f) fclose(af->f);
  if (af->tmp_path) unlink(af->tmp_path);
  pending_remove(af->pending);   /* after the unlink: a signal in between finds no file to remove */
  free(af->tmp_path);
  free(af->path);
  memset(af, 0, sizeof *af);
}

/* fsync the directory holding path, so that a rename into it is durable. */
static int sync_parent_dir(const char *path, int *err) {
  size_t n = strlen(path);
  char *dir = malloc(n + 2);
  if (!dir) { *err = ENOMEM; return -1; }
  memcpy(dir, path, n + 1);
  char *slash = strrchr(dir, '/');
  if (!slash) strcpy(dir, ".");
  else if (slash == dir) dir[1] = 0;
  else *slash = 0;
  int rc = 0, fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) { *err = errno; rc = -1; }
  else {
    /* Some file systems cannot sync directories: not an error there. */
    if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP && errno != EROFS) { *err = errno; rc = -1; }
    close(fd);
  }
  free(dir);
  return rc;
}

/* Phase 1 of a commit: the data flushed, synced and the file closed (where a full disk or a
 * failing device shows). On failure the temporary file is removed (the target untouched). */
static vlm_status atomic_finish(vlm_atomic_file *af) {
  if (!af || !af->f || !af->path)
    return vlm_error(VLM_ERR_ARG, "atomic commit of a file that is not open");
  if (!af->tmp_path) {   /* a device or FIFO written directly */
    int bad = fflush(af->f) != 0 || ferror(af->f), e = errno ? errno : EIO;
    bad |= fclose(af->f) != 0;
    af->f = NULL;
    if (!bad) return VLM_OK;
    vlm_status s = vlm_error(VLM_ERR_IO, "%s: cannot write: %s", af->path, strerror(e));
    vlm_atomic_abort(af);
    return s;
  }
  const char *what = NULL;
  int e = 0;
  if (fflush(af->f) != 0 || ferror(af->f)) { what = "cannot write"; e = errno ? errno : EIO; }
  else if (fsync(fileno(af->f)) != 0) { what = "cannot sync"; e = errno; }
  int rc = fclose(af->f);
  af->f = NULL;
  if (!what && rc != 0) { what = "cannot close"; e = errno; }
  if (!what) return VLM_OK;
  vlm_status s = vlm_error(VLM_ERR_IO, "%s: %s (%s): %s", af->path, what, af->tmp_path, strerror(e));
  vlm_atomic_abort(af); /* removes the temporary file; the target was not touched */
  return s;
}

/* Phase 2: the finished temporary file renamed over the target, the directory synced. */
static vlm_status atomic_place(vlm_atomic_file *af) {
  if (!af->tmp_path) {   /* written directly: nothing to rename */
    vlm_atomic_abort(af);
    return VLM_OK;
  }
  int e = 0;
  if (rename(af->tmp_path, af->path) != 0) {
    e = errno;
    vlm_status s = vlm_error(VLM_ERR_IO, "%s: cannot rename the temporary file into place (%s): %s", af->path,
                             af->tmp_path, strerror(e));
    vlm_atomic_abort(af);
    return s;
  }
  /* The new content is in place; only its durability is in question now. */
  pending_remove(af->pending);
  af->pending = 0;
  free(af->tmp_path);
  af->tmp_path = NULL;
  vlm_status s = VLM_OK;
  if (sync_parent_dir(af->path, &e) != 0)
    s = vlm_error(VLM_ERR_IO, "%s: written and renamed into place, but its directory could not be synced: %s",
                  af->path, strerror(e));
  vlm_atomic_abort(af); /* frees the rest */
  return s;
}

vlm_status vlm_atomic_commit(vlm_atomic_file *af) {
  vlm_status s = atomic_finish(af);
  return s == VLM_OK ? atomic_place(af) : s;
}

vlm_status vlm_atomic_commit_all(vlm_atomic_file *af, int n) {
  vlm_status s = VLM_OK;
  char msg[1024] = "";
  int i = 0;
  for (; i < n && s == VLM_OK; i++) s = atomic_finish(&af[i]);
  if (s != VLM_OK) {   /* af[i - 1] failed and is aborted: abort the others, keep its message */
    snprintf(msg, sizeof msg, "%s", vlm_last_error());
    for (int j = 0; j < n; j++)
      if (j != i - 1) vlm_atomic_abort(&af[j]);
    return vlm_error(s, "%s", msg);
  }
  for (i = 0; i < n; i++) {   /* every file is whole on disk: only renames are left */
    vlm_status r = atomic_place(&af[i]);
    if (r != VLM_OK && s == VLM_OK) {
      s = r;
      snprintf(msg, sizeof msg, "%s", vlm_last_error());
    }
  }
  return s == VLM_OK ? VLM_OK : vlm_error(s, "%s", msg);
}

vlm_status vlm_atomic_stage(vlm_atomic_file *af, const char *path, const void *data, size_t n) {
  vlm_status s = vlm_atomic_open(af, path);
  if (s != VLM_OK) return s;
  errno = 0;
  if (n && fwrite(data, 1, n, af->f) != n) {
    int e = errno;
    vlm_atomic_abort(af);
    return vlm_error(VLM_ERR_IO, "%s: cannot write %zu bytes: %s", path, n, strerror(e ? e : EIO));
  }
  return VLM_OK;
}

vlm_status vlm_write_file_atomic(const char *path, const void *data, size_t n) {
  vlm_atomic_file af;
  vlm_status s = vlm_atomic_stage(&af, path, data, n);
  return s == VLM_OK ? vlm_atomic_commit(&af) : s;
}

/* ------------------------------------------------------------------ writer */

typedef struct {
  char *name;
  vlm_dtype dtype;
  vlm_device device;
  int ndim;
  int64_t shape[VLM_MAX_DIMS];
  const void *data;
  uint64_t nbytes;
} wentry;

struct vlm_st_writer {
  wentry *e;
  int n, cap;
  int *slots;        /* open-addressing name set: index + 1, 0 = empty */
  size_t nslots;     /* power of two, > 2 n */
  char **mkeys, **mvals;
  int nm, capm;
  vlm_status err;    /* first failure, sticky */
  char *errmsg;
};

vlm_st_writer *vlm_st_writer_new(void) { return calloc(1, sizeof(vlm_st_writer)); }

void vlm_st_writer_free(vlm_st_writer *w) {
  if (!w) return;
  for (int i = 0; i < w->n; i++) free(w->e[i].name);
  free(w->e);
  free(w->slots);
  for (int i = 0; i < w->nm; i++) {
    free(w->mkeys[i]);
    free(w->mvals[i]);
  }
  free(w->mkeys);
  free(w->mvals);
  free(w->errmsg);
  free(w);
}

/* Set the error message, remember the first failure, return the code. */
static vlm_status werr(vlm_st_writer *w, vlm_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static vlm_status werr(vlm_st_writer *w, vlm_status code, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  vlm_error(code, "%s", buf);
  if (w && !w->err) {
    w->err = code;
    w->errmsg = strdup(buf);
  }
  return code;
}

static uint64_t hash_name(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h;
}

/* Slot of name: its entry (*found = 1) or the empty slot where it would go. */
static size_t name_slot(const vlm_st_writer *w, const char *name, int *found) {
  size_t mask = w->nslots - 1, i = (size_t)hash_name(name) & mask;
  for (;;) {
    int k = w->slots[i];
    if (!k) { *found = 0; return i; }
    if (!strcmp(w->e[k - 1].name, name)) { *found = 1; return i; }
    i = (i + 1) & mask;
  }
}

static int grow_slots(vlm_st_writer *w) {
  size_t ns = w->nslots ? w->nslots * 2 : 64;
  int *old = w->slots;
  w->slots = calloc(ns, sizeof(int));
  if (!w->slots) { w->slots = old; return -1; }
  w->nslots = ns;
  free(old);
  for (int k = 0; k < w->n; k++) {
    int found;
    w->slots[name_slot(w, w->e[k].name, &found)] = k + 1;
  }
  return 0;
}

static vlm_status add_impl(vlm_st_writer *w, const char *name, vlm_dtype dt, vlm_device dev, int ndim,
                           const int64_t *shape, const void *data) {
  if (!w) return vlm_error(VLM_ERR_ARG, "safetensors writer: NULL writer");
  if (!name || !name[0]) return werr(w, VLM_ERR_ARG, "safetensors writer: empty tensor name");
  size_t nl = strlen(name);
  if (nl > ST_MAX_NAME)
    return werr(w, VLM_ERR_ARG, "safetensors writer: tensor name of %zu bytes is too long (limit %u)", nl,
                ST_MAX_NAME);
  if (vlm_st__utf8_check((const uint8_t *)name, nl) != nl)
    return werr(w, VLM_ERR_ARG, "safetensors writer: tensor name \"%.200s\" is not valid UTF-8", name);
  if (!strcmp(name, "__metadata__"))
    return werr(w, VLM_ERR_ARG, "safetensors writer: \"__metadata__\" cannot name a tensor");
  if ((unsigned)dt >= VLM_DTYPE_COUNT)
    return werr(w, VLM_ERR_ARG, "safetensors writer: tensor \"%.200s\": bad dtype %d", name, (int)dt);
  if (dev != VLM_CPU && dev != VLM_CUDA)
    return werr(w, VLM_ERR_ARG, "safetensors writer: tensor \"%.200s\": bad device %d", name, (int)dev);
  if (ndim < 0 || ndim > VLM_MAX_DIMS || (ndim > 0 && !shape))
    return werr(w, VLM_ERR_ARG, "safetensors writer: tensor \"%.200s\": %d dims (at most %d)", name, ndim,
                VLM_MAX_DIMS);
  uint64_t numel = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0 || shape[i] >= ST_MAX_DIM)
      return werr(w, VLM_ERR_ARG, "safetensors writer: tensor \"%.200s\": dim %d is %lld", name, i,
                  (long long)shape[i]);
    uint64_t v = (uint64_t)shape[i];
    if (v && numel > (uint64_t)INT64_MAX / v)
      return werr(w, VLM_ERR_ARG, "safetensors writer: tensor \"%.200s\": shape overflows", name);
    numel *= v;
  }
  size_t isz = vlm_dtype_size(dt);
  if (numel > (uint64_t)INT64_MAX / isz)
    return werr(w, VLM_ERR_ARG, "safetensors writer: tensor \"%.200s\": byte size overflows", name);
  uint64_t nbytes = numel * isz;
  if (nbytes && !data)
    return werr(w, VLM_ERR_ARG, "safetensors writer: tensor \"%.200s\": NULL data for %llu bytes", name,
                (unsigned long long)nbytes);

  if ((size_t)(w->n + 1) * 2 >= w->nslots && grow_slots(w) != 0)
    return werr(w, VLM_ERR_OOM, "safetensors writer: out of memory");
  int found;
  size_t slot = name_slot(w, name, &found);
  if (found)
    return werr(w, VLM_ERR_ARG, "safetensors writer: tensor name \"%.200s\" added twice", name);
  if (w->n == w->cap) {
    int nc = w->cap ? w->cap * 2 : 32;
    wentry *ne = realloc(w->e, (size_t)nc * sizeof(wentry));
    if (!ne) return werr(w, VLM_ERR_OOM, "safetensors writer: out of memory");
    w->e = ne;
    w->cap = nc;
  }
  wentry *e = &w->e[w->n];
  memset(e, 0, sizeof *e);
  if (!(e->name = strdup(name))) return werr(w, VLM_ERR_OOM, "safetensors writer: out of memory");
  e->dtype = dt;
  e->device = dev;
  e->ndim = ndim;
  for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
  e->data = data;
  e->nbytes = nbytes;
  w->n++;
  w->slots[slot] = w->n;
  return VLM_OK;
}

vlm_status vlm_st_writer_add(vlm_st_writer *w, const char *name, vlm_dtype dt, int ndim, const int64_t *shape,
                             const void *data) {
  return add_impl(w, name, dt, VLM_CPU, ndim, shape, data);
}

vlm_status vlm_st_writer_add_tensor(vlm_st_writer *w, const char *name, const vlm_tensor *t) {
  if (!t) return werr(w, VLM_ERR_ARG, "safetensors writer: tensor \"%.200s\": NULL tensor", name ? name : "");
  if (!vlm_is_contiguous(t))
    return werr(w, VLM_ERR_ARG, "safetensors writer: tensor \"%.200s\" is a strided view; only contiguous "
                "tensors can be saved", name ? name : "");
  return add_impl(w, name, t->dtype, t->device, t->ndim, t->shape, t->data);
}

vlm_status vlm_st_writer_meta(vlm_st_writer *w, const char *key, const char *value) {
  if (!w) return vlm_error(VLM_ERR_ARG, "safetensors writer: NULL writer");
  if (!key || !key[0] || !value) return werr(w, VLM_ERR_ARG, "safetensors writer: empty metadata key or NULL value");
  size_t kl = strlen(key), vl = strlen(value);
  if (vlm_st__utf8_check((const uint8_t *)key, kl) != kl || vlm_st__utf8_check((const uint8_t *)value, vl) != vl)
    return werr(w, VLM_ERR_ARG, "safetensors writer: metadata \"%.200s\" is not valid UTF-8", key);
  char *v = strdup(value);
  if (!v) return werr(w, VLM_ERR_OOM, "safetensors writer: out of memory");
  for (int i = 0; i < w->nm; i++)
    if (!strcmp(w->mkeys[i], key)) { /* setting a key again replaces its value */
      free(w->mvals[i]);
      w->mvals[i] = v;
      return VLM_OK;
    }
  if (w->nm == w->capm) {
    int nc = w->capm ? w->capm * 2 : 8;
    char **nk = realloc(w->mkeys, (size_t)nc * sizeof(char *));
    if (nk) w->mkeys = nk;
    char **nv = realloc(w->mvals, (size_t)nc * sizeof(char *));
    if (nv) w->mvals = nv;
    if (!nk || !nv) { free(v); return werr(w, VLM_ERR_OOM, "safetensors writer: out of memory"); }
    w->capm = nc;
  }
  char *k = strdup(key);
  if (!k) { free(v); return werr(w, VLM_ERR_OOM, "safetensors writer: out of memory"); }
  w->mkeys[w->nm] = k;
  w->mvals[w->nm] = v;
  w->nm++;
  return VLM_OK;
}

/* Growable byte buffer for the header. */
typedef struct { char *p; size_t n, cap; int oom; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < b->n + n + 1) nc *= 2;
    char *np = realloc(b->p, nc);
    if (!np) { b->oom = 1; return; }
    b->p = np;
    b->cap = nc;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_fmt(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fmt(sbuf *b, const char *fmt, ...) {
  char tmp[64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  sb_put(b, tmp, (size_t)n);
}
/* A JSON string literal (UTF-8 passes through; quote, backslash and control characters escaped). */
static void sb_json_str(sbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  const char *run = s;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    sb_put(b, run, (size_t)(s - run));
    if (c == '"') sb_put(b, "\\\"", 2);
    else if (c == '\\') sb_put(b, "\\\\", 2);
    else sb_fmt(b, "\\u%04x", c);
    run = s + 1;
  }
  sb_put(b, run, (size_t)(s - run));
  sb_put(b, "\"", 1);
}

static int cmp_wentry(const void *a, const void *b) {
  const wentry *x = *(const wentry *const *)a, *y = *(const wentry *const *)b;
  size_t sx = vlm_dtype_size(x->dtype), sy = vlm_dtype_size(y->dtype);
  if (sx != sy) return sx > sy ? -1 : 1;
  return strcmp(x->name, y->name);
}

static int cmp_meta_idx(const void *a, const void *b, void *ctx) {
  char **keys = ctx;
  return strcmp(keys[*(const int *)a], keys[*(const int *)b]);
}

/* Write n bytes of a CUDA buffer through a bounded host staging buffer. */
static int write_device(FILE *f, const void *src, uint64_t n) {
  size_t chunk = n < (64u << 20) ? (size_t)n : (64u << 20);
  void *buf = malloc(chunk);
  if (!buf) { errno = ENOMEM; return -1; }
  for (uint64_t off = 0; off < n; off += chunk) {
    size_t k = (n - off) < chunk ? (size_t)(n - off) : chunk;
    vlm_memcpy(buf, VLM_CPU, (const uint8_t *)src + off, VLM_CUDA, k);
    if (fwrite(buf, 1, k, f) != k) { free(buf); return -1; }
  }
  free(buf);
  return 0;
}

vlm_status vlm_st_writer_save(vlm_st_writer *w, const char *path) {
  vlm_atomic_file af;
  vlm_status s = vlm_st_writer_stage(w, path, &af);
  return s == VLM_OK ? vlm_atomic_commit(&af) : s;
}

vlm_status vlm_st_writer_stage(vlm_st_writer *w, const char *path, vlm_atomic_file *staged) {
  memset(staged, 0, sizeof *staged);
  if (!w) return vlm_error(VLM_ERR_ARG, "safetensors writer: NULL writer");
  if (!path || !path[0]) return vlm_error(VLM_ERR_ARG, "safetensors writer: empty file path");
  if (w->err)
    return vlm_error(w->err, "%s: not saved, an earlier call on this writer failed: %s", path,
                     w->errmsg ? w->errmsg : vlm_status_name(w->err));
  wentry **order = malloc((size_t)(w->n ? w->n : 1) * sizeof(*order));
  int *morder = malloc((size_t)(w->nm ? w->nm : 1) * sizeof(int));
  sbuf hb = {0};
  vlm_status s = VLM_OK;
  if (!order || !morder) { s = vlm_error(VLM_ERR_OOM, "%s: out of memory", path); goto done; }
  for (int i = 0; i < w->n; i++) order[i] = &w->e[i];
  qsort(order, (size_t)w->n, sizeof(*order), cmp_wentry);
  for (int i = 0; i < w->nm; i++) morder[i] = i;
  qsort_r(morder, (size_t)w->nm, sizeof(int), cmp_meta_idx, w->mkeys);

  sb_str(&hb, "{");
  if (w->nm) {
    sb_str(&hb, "\"__metadata__\":{");
    for (int i = 0; i < w->nm; i++) {
      if (i) sb_str(&hb, ",");
      sb_json_str(&hb, w->mkeys[morder[i]]);
      sb_str(&hb, ":");
      sb_json_str(&hb, w->mvals[morder[i]]);
    }
    sb_str(&hb, "}");
  }
  uint64_t off = 0;
  for (int i = 0; i < w->n; i++) {
    const wentry *e = order[i];
    if (i || w->nm) sb_str(&hb, ",");
    sb_json_str(&hb, e->name);
    sb_fmt(&hb, ":{\"dtype\":\"%s\",\"shape\":[", vlm_dtype_name(e->dtype));
    for (int d = 0; d < e->ndim; d++) sb_fmt(&hb, d ? ",%lld" : "%lld", (long long)e->shape[d]);
    sb_fmt(&hb, "],\"data_offsets\":[%llu,", (unsigned long long)off);
    off += e->nbytes;
    sb_fmt(&hb, "%llu]}", (unsigned long long)off);
  }
  sb_str(&hb, "}");
  while (!hb.oom && hb.n % 8) sb_put(&hb, " ", 1);
  if (hb.oom) { s = vlm_error(VLM_ERR_OOM, "%s: out of memory for the header", path); goto done; }
  if (hb.n > VLM_ST_MAX_HEADER) {
    s = vlm_error(VLM_ERR_ARG, "%s: header of %zu bytes exceeds the limit of %u bytes", path, hb.n,
                  VLM_ST_MAX_HEADER);
    goto done;
  }

  vlm_atomic_file af;
  if ((s = vlm_atomic_open(&af, path)) != VLM_OK) goto done;
  errno = 0;
  uint8_t len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hb.n >> (8 * i));
  int bad = fwrite(len8, 1, 8, af.f) != 8 || fwrite(hb.p, 1, hb.n, af.f) != hb.n;
  for (int i = 0; i < w->n && !bad; i++) {
    const wentry *e = order[i];
    if (!e->nbytes) continue;
    if (e->device == VLM_CUDA) bad = write_device(af.f, e->data, e->nbytes) != 0;
    else bad = fwrite(e->data, 1, (size_t)e->nbytes, af.f) != e->nbytes;
  }
  if (bad) {
    int err = errno ? errno : EIO;
    vlm_atomic_abort(&af);
    s = vlm_error(VLM_ERR_IO, "%s: cannot write: %s", path, strerror(err));
    goto done;
  }
  *staged = af;   /* written: the caller commits or aborts it */
done:
  free(order);
  free(morder);
  free(hb.p);
  return s;
}

/* ------------------------------------------------------------------ for other formats */

vlm_status vlm_st__writer_check(const vlm_st_writer *w, const char *path) {
  if (!w) return vlm_error(VLM_ERR_ARG, "safetensors writer: NULL writer");
  if (w->err)
    return vlm_error(w->err, "%s: not saved, an earlier call on this writer failed: %s", path,
                     w->errmsg ? w->errmsg : vlm_status_name(w->err));
  return VLM_OK;
}

int vlm_st__writer_count(const vlm_st_writer *w) { return w ? w->n : 0; }

void vlm_st__writer_entry(const vlm_st_writer *w, int i, vlm_st_went *out) {
  const wentry *e = &w->e[i];
  out->name = e->name;
  out->dtype = e->dtype;
  out->device = e->device;
  out->ndim = e->ndim;
  out->shape = e->shape;
  out->data = e->data;
  out->nbytes = e->nbytes;
}
