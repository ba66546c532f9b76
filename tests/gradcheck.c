#define _POSIX_C_SOURCE 200809L /* mkdtemp, open_memstream */
#include "gradcheck.h"

#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int vt_passed = 0, vt_failed = 0;

int vt_finish(void) {
  printf("%d passed, %d failed\n", vt_passed, vt_failed);
  return vt_failed ? 1 : 0;
}

void vt_skip(const char *why) {
  printf("SKIPPED: %s\n", why);
  fflush(stdout);
  exit(77);
}

const char *vt_shared_dir(int argc, char **argv) {
  if (argc > 1 && argv[1][0]) return argv[1];
  const char *e = getenv("VLM_SHARED_DIR");
  return (e && e[0]) ? e : NULL;
}

double vt_max_abs(const float *got, const float *ref, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - (double)ref[i]);
    if (d > m || isnan(d)) m = isnan(d) ? INFINITY : d;
  }
  return m;
}

double vt_max_rel(const float *got, const float *ref, int64_t n, double floor) {
  double scale = floor;
  for (int64_t i = 0; i < n; i++)
    if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
  return vt_max_abs(got, ref, n) / scale;
}

void vt_fill_normal(float *x, int64_t n, uint64_t seed, float std) {
  vlm_rng r;
  vlm_rng_seed(&r, seed);
  vlm_rng_fill_normal(&r, x, (size_t)n, 0.0f, std);
}

float *vt_alloc(int64_t n) {
  float *p = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
  if (!p) { fprintf(stderr, "out of memory\n"); abort(); }
  return p;
}

float *vt_host_f32(const vlm_tensor *t) {
  float *h = vt_alloc(vlm_numel(t));
  vlm_tensor d = vlm_tensor_make(h, VLM_F32, VLM_CPU, t->ndim, t->shape);
  vlm_copy(&d, t);
  return h;
}

static double weighted_sum(const vt_gradcheck *g) {
  double s = 0;
  for (int64_t i = 0; i < g->n_out; i++) s += (double)g->dout[i] * (double)g->out[i];
  return s;
}

int vt_gradcheck_run(const char *what, vt_gradcheck *g) {
  double h = g->h > 0 ? g->h : 1e-2;
  double tol = g->tol > 0 ? g->tol : 1e-3;
  int max_checks = g->max_checks > 0 ? g->max_checks : 256;
  vlm_rng r;
  vlm_rng_seed(&r, g->seed ? g->seed : 1234);
  vlm_rng_fill_normal(&r, g->dout, (size_t)g->n_out, 0.0f, 1.0f);

  g->forward(g->ctx);
  for (int k = 0; k < g->n_inputs; k++) memset(g->inputs[k].grad, 0, sizeof(float) * (size_t)g->inputs[k].n);
  g->backward(g->ctx);

  int bad = 0;
  for (int k = 0; k < g->n_inputs; k++) {
    vt_gc_input *in = &g->inputs[k];
    int64_t n_check = in->n < max_checks ? in->n : max_checks;
    double num2 = 0, diff2 = 0, max_num = 0, max_diff = 0;
    for (int64_t c = 0; c < n_check; c++) {
      int64_t i = in->n <= max_checks ? c : (int64_t)vlm_rng_below(&r, (uint64_t)in->n);
      float x0 = in->x[i];
      in->x[i] = (float)(x0 + h);
      double hp = (double)in->x[i] - x0;  /* the step actually taken in float */
      g->forward(g->ctx);
      double fp = weighted_sum(g);
      in->x[i] = (float)(x0 - h);
      double hm = x0 - (double)in->x[i];
      g->forward(g->ctx);
      double fm = weighted_sum(g);
      in->x[i] = x0;
      double num = (fp - fm) / (hp + hm);
      double ana = in->grad[i];
      num2 += num * num;
      diff2 += (ana - num) * (ana - num);
      if (fabs(num) > max_num) max_num = fabs(num);
      if (fabs(ana - num) > max_diff || isnan(ana)) max_diff = isnan(ana) ? INFINITY : fabs(ana - num);
    }
    g->forward(g->ctx);
    double rel_norm = num2 > 0 ? sqrt(diff2 / num2) : sqrt(diff2);
    double rel_max = max_num > 0 ? max_diff / max_num : max_diff;
    int ok = rel_norm < tol && rel_max < tol;
    if (!ok) bad++;
    CHECK(ok, "%s: d/d%s relative error %.3g (norm), %.3g (max) over %lld elements, tolerance %.1g",
          what, in->name, rel_norm, rel_max, (long long)n_check, tol);
    if (getenv("VT_VERBOSE"))
      printf("  gradcheck %s d/d%s: rel %.3g (norm) %.3g (max) over %lld elements\n", what, in->name,
             rel_norm, rel_max, (long long)n_check);
  }
  return bad;
}

/* Runs fn(ctx) in a child; expects it to abort with a message containing each needle. */
void vt_expect_abort(const char *what, void (*fn)(void *), void *ctx, const char *needle1, const char *needle2) {
  fflush(stdout);
  fflush(stderr);
  int fds[2];
  if (pipe(fds) != 0) { CHECK(0, "%s: pipe", what); return; }
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    fn(ctx);
    _exit(0);
  }
  close(fds[1]);
  char buf[4096];
  size_t n = 0;
  ssize_t got;
  while (n < sizeof buf - 1 && (got = read(fds[0], buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)got;
  buf[n] = 0;
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "%s: expected an abort (status %d)", what, st);
  CHECK(strstr(buf, needle1) && (!needle2 || strstr(buf, needle2)), "%s: message \"%s\" lacks \"%s\" / \"%s\"",
        what, buf, needle1, needle2 ? needle2 : "");
  if (getenv("VT_VERBOSE")) printf("  %s: child aborted with: %s", what, buf);
}

void vt_write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) { perror(path); abort(); }
  if (n && fwrite(p, 1, n, f) != n) { perror(path); abort(); }
  fclose(f);
}

uint8_t *vt_read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *p = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
  if (!p || fread(p, 1, (size_t)sz, f) != (size_t)sz) { free(p); fclose(f); return NULL; }
  fclose(f);
  p[sz] = 0;
  *n = (size_t)sz;
  return p;
}

void vt_rm_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  char p[4400];
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
    struct stat sb;
    if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) vt_rm_tree(p);
    else unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

uint8_t *vt_png_rgb(int w, int h, const uint8_t *rgb, size_t *n) {
  char *mem = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&mem, &len);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  if (!f || !png || !info || setjmp(png_jmpbuf(png))) abort();
  png_init_io(png, f);
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, 0, 0, 0);
  png_write_info(png, info);
  for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)rgb + (size_t)y * w * 3);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  fclose(f);
  *n = len;
  return (uint8_t *)mem;
}

const char *vt_path(const char *dir, const char *name) {
  static char buf[8][4400];
  static int k;
  k = (k + 1) % 8;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
  return buf[k];
}

const char *vt_subdir(const char *dir, const char *name) {
  const char *d = vt_path(dir, name);
  mkdir(d, 0777);
  return d;
}

int vt_copy_file(const char *from, const char *to) {
  size_t n;
  uint8_t *b = vt_read_file(from, &n);
  if (!b) return 0;
  vt_write_file(to, b, n);
  free(b);
  return 1;
}

void vt_put(const char *dir, const char *name, const void *p, size_t n) { vt_write_file(vt_path(dir, name), p, n); }

int vt_make_tmp_dir(char *dir, size_t n, const char *prefix) {
  snprintf(dir, n, "/tmp/%s-XXXXXX", prefix);
  if (mkdtemp(dir)) return 1;
  CHECK(0, "mkdtemp %s: %s", dir, strerror(errno));
  return 0;
}

void vt_tar_header(FILE *f, const char *name, size_t size, char type) {
  unsigned char h[512];
  memset(h, 0, sizeof h);
  snprintf((char *)h, 100, "%s", name);
  memcpy(h + 100, "0000644", 7);
  memcpy(h + 108, "0000000", 7);
  memcpy(h + 116, "0000000", 7);
  snprintf((char *)h + 124, 12, "%011lo", (unsigned long)size);
  memcpy(h + 136, "00000000000", 11);
  h[156] = (unsigned char)type;
  memcpy(h + 257, "ustar", 6);
  memcpy(h + 263, "00", 2);
  memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < 512; i++) sum += h[i];
  snprintf((char *)h + 148, 8, "%06o", sum);
  h[155] = ' ';
  fwrite(h, 1, 512, f);
}

void vt_tar_data(FILE *f, const void *d, size_t n) {
  fwrite(d, 1, n, f);
  static const char zero[512];
  if (n % 512) fwrite(zero, 1, 512 - n % 512, f);
}

void vt_tar_add(FILE *f, const char *name, const void *d, size_t n) {
  vt_tar_header(f, name, n, '0');
  vt_tar_data(f, d, n);
}
