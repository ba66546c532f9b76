/* Helpers shared by the subcommands. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apps/apps.h"
#include "core/core.h"
#include "model/encode.h"

int vlm_app_is_help(const char *arg) { return !strcmp(arg, "-h") || !strcmp(arg, "--help"); }

int vlm_app_bad_arg(const char *cmd, const char *arg) {
  if (arg[0] == '-' && arg[1])
    fprintf(stderr, "%s: unknown option '%s' (see '%s --help')\n", cmd, arg, cmd);
  else
    fprintf(stderr, "%s: unexpected argument '%s' (see '%s --help')\n", cmd, arg, cmd);
  return 2;
}

const char *vlm_app_value(const char *cmd, int argc, char **argv, int *i) {
  if (*i + 1 >= argc) {
    fprintf(stderr, "%s: %s needs a value\n", cmd, argv[*i]);
    return NULL;
  }
  return argv[++*i];
}

int vlm_app_encoder_flags(const char *cmd, const char *precision, const char *device) {
  if (strcmp(precision, "f32") && strcmp(precision, "fp32") && strcmp(precision, "bf16")) {   /* fp32: as vlm train */
    fprintf(stderr, "%s: --precision must be f32 (or fp32) or bf16, got '%s'\n", cmd, precision);
    return -1;
  }
  if (strcmp(device, "cpu") && strcmp(device, "cuda")) {
    fprintf(stderr, "%s: --device must be cpu or cuda, got '%s'\n", cmd, device);
    return -1;
  }
  return (!strcmp(precision, "bf16") ? VLM_ENC_BF16 : 0) | (!strcmp(device, "cuda") ? VLM_ENC_CUDA : 0);
}

int vlm_app_parse_int(const char *cmd, const char *flag, const char *s, long long lo, long long hi, long long *out) {
  char *end = NULL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || !end || *end || end == s || v < lo || v > hi) {
    fprintf(stderr, "%s: %s expects an integer in [%lld, %lld], got '%s'\n", cmd, flag, lo, hi, s);
    return 0;
  }
  *out = v;
  return 1;
}

int vlm_app_read_inputs(const char *path, int64_t S, int64_t ctx, int64_t vocab, float **images, void **ids,
                        vlm_dtype *ids_dt, int64_t *B, int64_t *L) {
  vlm_safetensors st;
  if (vlm_st_open(&st, path) != VLM_OK) {
    fprintf(stderr, "vlm forward: %s\n", vlm_last_error());
    return 0;
  }
  int ok = 0;
  const vlm_st_entry *ei = vlm_st_find(&st, "images"), *et = vlm_st_find(&st, "text");
  if (!ei || !et) {
    fprintf(stderr, "vlm forward: %s: needs tensors `images` and `text`%s%s\n", path, ei ? "" : " (no images)",
            et ? "" : " (no text)");
  } else if (ei->ndim != 4 || ei->shape[1] != 3 || ei->shape[2] != S || ei->shape[3] != S || ei->shape[0] < 1) {
    fprintf(stderr, "vlm forward: %s: images must be [B, 3, %lld, %lld] with B >= 1 for this model\n", path,
            (long long)S, (long long)S);
  } else if (et->ndim != 2 || et->shape[0] != ei->shape[0] || et->shape[1] < 1 ||
             et->shape[1] > ctx || (et->dtype != VLM_I64 && et->dtype != VLM_I32)) {
    fprintf(stderr, "vlm forward: %s: text must be [%lld, L<=%lld] I64 or I32\n", path, (long long)ei->shape[0],
            (long long)ctx);
  } else {
    *B = ei->shape[0];
    *L = et->shape[1];
    int64_t n = *B * 3 * S * S, nt = *B * *L;
    *images = malloc((size_t)n * sizeof(float));
    *ids = malloc((size_t)nt * vlm_dtype_size(et->dtype));
    *ids_dt = et->dtype;
    if (!*images || !*ids) {
      fprintf(stderr, "vlm forward: out of memory\n");
    } else if (vlm_st_read_f32(&st, ei, *images, n) != VLM_OK) {
      fprintf(stderr, "vlm forward: %s\n", vlm_last_error());
    } else {
      memcpy(*ids, et->data, (size_t)nt * vlm_dtype_size(et->dtype));
      ok = 1;
      for (int64_t i = 0; i < nt && ok; i++) {
        int64_t id = et->dtype == VLM_I64 ? ((int64_t *)*ids)[i] : ((int32_t *)*ids)[i];
        if (id < 0 || id >= vocab) {
          fprintf(stderr, "vlm forward: %s: text[%lld, %lld] = %lld is outside the vocabulary [0, %lld)\n", path,
                  (long long)(i / *L), (long long)(i % *L), (long long)id, (long long)vocab);
          ok = 0;
        }
      }
    }
    if (!ok) { free(*images); free(*ids); *images = NULL; *ids = NULL; }
  }
  vlm_st_close(&st);
  return ok;
}

/* "./a//b/./c/" -> "a/b/c" in place (".." is kept: it may cross a link), so that one file
 * named two ways in two runs is one item of the index. */
void vlm_app_clean_path(char *p) {
  const int abs = p[0] == '/';
  char *w = p + abs, *r = p + abs;
  while (*r) {
    char *e = strchr(r, '/');
    size_t len = e ? (size_t)(e - r) : strlen(r);
    if (len && !(len == 1 && r[0] == '.')) {
      if (w != p + abs) *w++ = '/';
      memmove(w, r, len);
      w += len;
    }
    r += len + (e != NULL);
  }
  if (w == p + abs && !abs) *w++ = '.';
  *w = 0;
}

/* Whether a and b name the same file: the same inode when both exist, else the same clean path. */
int vlm_app_same_file(const char *a, const char *b) {
  struct stat sa, sb;
  int ea = stat(a, &sa) == 0, eb = stat(b, &sb) == 0;
  if (ea && eb) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  if (ea || eb) return 0;
  char *ca = strdup(a), *cb = strdup(b);
  int same = ca && cb ? (vlm_app_clean_path(ca), vlm_app_clean_path(cb), !strcmp(ca, cb)) : !strcmp(a, b);
  free(ca);
  free(cb);
  return same;
}

int vlm_app_threads_explicit = 0;

void vlm_app_print_image_transform(const vlm_vit_config *v) {
  double m[3], s[3];
  int mode;
  vlm_vit_image_norm(v, m, s, &mode);
  const long long n = (long long)v->image_size;
  printf("images: %s %lld%s, bicubic; mean (%g, %g, %g), std (%g, %g, %g)\n",
         mode == 1 ? "squashed to" : mode == 2 ? "longer side to" : "shorter side to", n,
         mode == 1 ? "" : mode == 2 ? ", padded" : ", center crop", m[0], m[1], m[2], s[0], s[1], s[2]);
}

int vlm_app_parse_rgb(const char *cmd, const char *flag, const char *s, double v[3]) {
  const char *p = s;
  int n = 0, ok = 1;
  while (ok && n < 3) {
    char *end;
    errno = 0;
    const double x = strtod(p, &end);
    ok = !errno && end != p && x > -1e6 && x < 1e6;
    if (ok) v[n++] = x;
    if (!ok || !*end) break;
    ok = *end == ',' && n < 3;
    p = end + 1;
  }
  if (ok && n == 1) v[1] = v[2] = v[0];
  if (!ok || (n != 1 && n != 3)) {
    fprintf(stderr, "%s: %s expects R,G,B (or one number for all three), got '%s'\n", cmd, flag, s);
    return 0;
  }
  return 1;
}
