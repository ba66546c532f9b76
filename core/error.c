/* Errors (thread-local last message) and logging. */
#include "core/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char g_msg[VLM_ERR_LEN];

vlm_status vlm_error(vlm_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_msg, sizeof g_msg, fmt, ap);
  va_end(ap);
  return code;
}

vlm_status vlm_error_prefix(vlm_status code, const char *fmt, ...) {
  char old[VLM_ERR_LEN], pre[VLM_ERR_LEN];
  memcpy(old, g_msg, sizeof old);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(pre, sizeof pre, fmt, ap);
  va_end(ap);
  size_t n = strlen(pre);
  if (n > VLM_ERR_LEN - 3) n = VLM_ERR_LEN - 3;
  memcpy(g_msg, pre, n);
  memcpy(g_msg + n, ": ", 2);
  size_t m = strlen(old);
  if (m > VLM_ERR_LEN - n - 3) m = VLM_ERR_LEN - n - 3;
  memcpy(g_msg + n + 2, old, m);
  g_msg[n + 2 + m] = 0;
  return code;
}

const char *vlm_last_error(void) { return g_msg[0] ? g_msg : "no error"; }
void vlm_error_clear(void) { g_msg[0] = 0; }

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
