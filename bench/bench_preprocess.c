/* bench_preprocess: decode + CLIP preprocessing to 224 of JPEG/PNG files, one thread.
 *
 * For each file: decode alone, and decode + resize/crop/normalize, full-scale (PIL-exact)
 * and with reduced-scale JPEG decoding (--jpeg-reduce; not bit-identical to PIL).
 * Prints the median of R rounds in ms per image.
 *
 * Usage: bench_preprocess [--rounds R] [--best] [FILE...]
 *   --best  report the fastest round (steadier on a busy machine) instead of the median
 *   default files: the JPEGs in ../shared/data/images (retina.jpg, rocket.jpg)
 * Timings are printed, never checked: this is not a test. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "datasets/datasets.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int g_best = 0;  /* --best: report the fastest round instead of the median */

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

static uint8_t *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *p = malloc((size_t)sz);
  if (!p || fread(p, 1, (size_t)sz, f) != (size_t)sz) { free(p); fclose(f); return NULL; }
  fclose(f);
  *n = (size_t)sz;
  return p;
}

/* mode 0: decode only; 1: decode + preprocess; 2: reduced decode + preprocess. */
static double run(const uint8_t *buf, size_t n, const char *name, int mode, int rounds) {
  vlm_preprocess_cfg cfg;
  vlm_preprocess_cfg_default(&cfg, 224);
  vlm_decode_opts o = {.jpeg_reduce_min_side = mode == 2 ? 224 : 0};
  uint8_t *u8 = malloc(3 * 224 * 224);
  float *px = malloc(sizeof(float) * 3 * 224 * 224);
  double *t = malloc(sizeof(double) * (size_t)rounds);
  for (int r = 0; r < rounds; r++) {
    double t0 = now();
    vlm_image img;
    if (vlm_image_decode_mem(buf, n, name, &o, &img) != VLM_OK) {
      fprintf(stderr, "%s\n", vlm_last_error());
      exit(1);
    }
    if (mode > 0 && vlm_preprocess_image(&img, &cfg, u8, px) != VLM_OK) {
      fprintf(stderr, "%s\n", vlm_last_error());
      exit(1);
    }
    vlm_image_free(&img);
    t[r] = now() - t0;
  }
  qsort(t, (size_t)rounds, sizeof(double), cmp_double);
  double med = g_best ? t[0] : t[rounds / 2];
  free(t);
  free(u8);
  free(px);
  return med * 1e3;
}

int main(int argc, char **argv) {
  int rounds = 15, nf = 0;
  const char *files[64];
  static char defaults[2][4096];
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--best")) g_best = 1;
    else if (nf < 64) files[nf++] = argv[i];
  }
  if (rounds < 1) rounds = 1;
  if (nf == 0) {
    const char *sd = getenv("VLM_SHARED_DIR");
    if (!sd) sd = "../shared";
    snprintf(defaults[0], sizeof defaults[0], "%s/data/images/retina.jpg", sd);
    snprintf(defaults[1], sizeof defaults[1], "%s/data/images/rocket.jpg", sd);
    files[0] = defaults[0];
    files[1] = defaults[1];
    nf = 2;
  }
  printf("decode + CLIP preprocess to 224, one thread, %s of %d rounds (ms per image)\n", g_best ? "best" : "median",
         rounds);
  printf("%-40s %10s %12s %12s %14s\n", "file", "size", "decode", "decode+prep", "reduced+prep");
  double tot[3] = {0, 0, 0};
  for (int k = 0; k < nf; k++) {
    size_t n;
    uint8_t *buf = slurp(files[k], &n);
    if (!buf) {
      fprintf(stderr, "cannot read %s\n", files[k]);
      return 1;
    }
    vlm_image img;
    if (vlm_image_decode_mem(buf, n, files[k], NULL, &img) != VLM_OK) {
      fprintf(stderr, "%s\n", vlm_last_error());
      return 1;
    }
    char dims[32];
    snprintf(dims, sizeof dims, "%dx%d", img.w, img.h);
    vlm_image_free(&img);
    double t[3];
    for (int m = 0; m < 3; m++) tot[m] += t[m] = run(buf, n, files[k], m, rounds);
    const char *b = strrchr(files[k], '/');
    printf("%-40s %10s %12.2f %12.2f %14.2f\n", b ? b + 1 : files[k], dims, t[0], t[1], t[2]);
    free(buf);
  }
  printf("%-40s %10s %12.2f %12.2f %14.2f\n", "total", "", tot[0], tot[1], tot[2]);
  return 0;
}
