/* Errors (thread-local last message) and logging. */
#include "core/core.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The last message lives in one of two thread-local arrays, or, when it is longer
 * than VLM_ERR_LEN - 1 bytes (a checkpoint's list of every mismatched tensor), in a
 * heap copy of up to VLM_ERR_MAX bytes. A new message is always formatted into a
 * buffer other than the current one, so its arguments may include
 * vlm_last_error() itself. */
static _Thread_local char g_small[2][VLM_ERR_LEN];
static _Thread_local int g_idx;
static _Thread_local const char *g_cur;

/* Growable thread-local strings, freed by a key destructor when the thread ends. */
typedef struct { char *p[VLM_MSG_SLOTS]; } msg_slots;
static pthread_key_t g_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;
static int g_key_ok;                   /* read only after this thread's pthread_once */
static _Thread_local int g_has_slots;  /* this thread's slots exist (so g_key_ok was seen set) */
static void slots_free(void *v) {
  msg_slots *m = v;
  for (int i = 0; i < VLM_MSG_SLOTS; i++) free(m->p[i]);
  free(m);
}
static void key_make(void) { g_key_ok = pthread_key_create(&g_key, slots_free) == 0; }
static msg_slots *slots(void) {
  pthread_once(&g_key_once, key_make);
  if (!g_key_ok) return NULL;
  msg_slots *m = pthread_getspecific(g_key);
  if (!m && (m = calloc(1, sizeof *m)) != NULL && pthread_setspecific(g_key, m) != 0) {
    free(m);
    m = NULL;
  }
  if (m) g_has_slots = 1;
  return m;
}

/* A buffer of n bytes for a slot; slot_commit then frees the slot's old string (after the
 * formatting, since the arguments may point into it) and keeps the new one. */
static char *slot_alloc(size_t n) { return n <= VLM_ERR_MAX ? malloc(n) : NULL; }
static void slot_commit(int slot, char *buf) {
  msg_slots *m = slots();
  if (!m) {
    free(buf);
    return;
  }
  free(m->p[slot]);
  m->p[slot] = buf;
}

const char *vlm_msg_slot_copy(int slot, const char *s) {
  if (slot < 1 || slot >= VLM_MSG_SLOTS) return NULL;
  size_t n = strlen(s) + 1;
  char *b = slot_alloc(n);
  if (!b) return NULL;
  memcpy(b, s, n);
  if (!slots()) {
    free(b);
    return NULL;
  }
  slot_commit(slot, b);
  return b;
}

static void set_msg(const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  char *dst = g_small[!g_idx];
  int n = vsnprintf(dst, VLM_ERR_LEN, fmt, ap);
  if (n < 0) dst[0] = 0;
  const char *heap = NULL;
  if (n >= VLM_ERR_LEN) {
    char *h = slot_alloc((size_t)n + 1);
    if (h && slots()) {
      vsnprintf(h, (size_t)n + 1, fmt, ap2);
      heap = h;
    } else free(h);
  }
  va_end(ap2);
  if (heap) {
    slot_commit(0, (char *)heap);
    g_cur = heap;
    return;
  }
  g_idx = !g_idx;
  g_cur = dst;
  msg_slots *m = g_has_slots ? pthread_getspecific(g_key) : NULL;
  if (m && m->p[0]) slot_commit(0, NULL);   /* a short message: the long one's copy goes */
}

static void set_msgf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_msgf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  set_msg(fmt, ap);
  va_end(ap);
}

vlm_status vlm_error(vlm_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  set_msg(fmt, ap);
  va_end(ap);
  return code;
}

vlm_status vlm_error_prefix(vlm_status code, const char *fmt, ...) {
  char pre[VLM_ERR_LEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(pre, sizeof pre, fmt, ap);
  va_end(ap);
  set_msgf("%s: %s", pre, g_cur ? g_cur : "");
  return code;
}

const char *vlm_last_error(void) { return g_cur && g_cur[0] ? g_cur : "no error"; }
void vlm_error_clear(void) { set_msgf("%s", ""); }

const char *vlm_status_name(vlm_status s) {
  switch (s) {
    case VLM_OK: return "ok";
    case VLM_ERR_IO: return "I/O error";
    case VLM_ERR_FORMAT: return "format error";
    case VLM_ERR_ARG: return "bad argument";
    case VLM_ERR_OOM: return "out of memory";
    case VLM_ERR_UNSUPPORTED: return "unsupported";
    case VLM_ERR_INTERNAL: return "internal error";
  }
  return "unknown status";
}

void vlm_fatal(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "vlm: internal error at %s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

static int g_level = -1;

static int log_level(void) {
  if (g_level < 0) {
    const char *e = getenv("VLM_LOG");
    g_level = VLM_LOG_INFO;
    if (e) {
      if (!strcmp(e, "error")) g_level = VLM_LOG_ERROR;
      else if (!strcmp(e, "warn")) g_level = VLM_LOG_WARN;
      else if (!strcmp(e, "debug")) g_level = VLM_LOG_DEBUG;
    }
  }
  return g_level;
}

void vlm_log_set_level(vlm_log_level level) { g_level = (int)level; }

void vlm_log(vlm_log_level level, const char *fmt, ...) {
  if ((int)level > log_level()) return;
  static const char *names[] = {"error", "warning", "info", "debug"};
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "vlm: %s: ", names[level]);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

const char *vlm_shell_word(const char *s, char *buf, size_t n) {
  int plain = s[0] != 0 && s[0] != '~';
  for (const char *p = s; plain && *p; p++)
    plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("_-./:=+,@%", *p) != NULL;
  if (plain) return s;
  size_t k = 0;
  if (k < n) buf[k++] = '\'';
  for (const char *p = s; *p && k < n; p++) {
    if (*p != '\'') buf[k++] = *p;
    else if (k + 4 <= n) { memcpy(buf + k, "'\\''", 4); k += 4; }
    else k = n;
  }
  if (k + 2 > n) return s;   /* no room: unquoted */
  buf[k++] = '\'';
  buf[k] = 0;
  return buf;
}
