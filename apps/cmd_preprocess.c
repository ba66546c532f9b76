/* vlm preprocess: CLIP preprocessing of image files into safetensors. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apps/apps.h"
#include "core/core.h"
#include "datasets/datasets.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: vlm preprocess [--size N] [--resize-mode shortest|squash|longest] [--mean R,G,B]\n"
          "                      [--std R,G,B] [--max-image-pixels N] [--jpeg-reduce] IMAGE... --out DIR\n"
          "\n"
          "Decodes each JPEG, PNG or WebP and applies open_clip's eval preprocessing exactly as PIL +\n"
          "torchvision compute it: resize (bicubic, antialiased), center crop or pad, RGB, /255,\n"
          "(x - mean) / std. Writes DIR/<stem>.safetensors with crop_u8 U8 [3,N,N] (the RGB crop)\n"
          "and pixels F32 [3,N,N] (normalized). An image that fails is reported by name and the\n"
          "others are still processed; the exit status is then 1. An image named twice (the\n"
          "same file) is processed once; two files that would write the same DIR/<stem> are\n"
          "an error for the second.\n"
          "\n"
          "Options:\n"
          "  --size N             output side (default 224)\n"
          "  --resize-mode M      shortest: shorter side to N, center crop (default, CLIP eval)\n"
          "                       squash: resize to N x N, aspect ratio not kept\n"
          "                       longest: longer side to N, centered, padded with 0\n"
          "  --mean R,G,B         default OpenAI 0.48145466,0.4578275,0.40821073 (one number: all three)\n"
          "  --std R,G,B          default OpenAI 0.26862954,0.26130258,0.27577711\n"
          "  --max-image-pixels N refuse images with more pixels (default %lld), checked from\n"
          "                       the header before decoding\n"
          "  --jpeg-reduce        let libjpeg decode large JPEGs at 1/2, 1/4 or 1/8 scale (faster,\n"
          "                       NOT bit-identical to PIL)\n"
          "  --out DIR            output folder (created if missing)\n"
          "  --                   the arguments after it are images (names that start with '-')\n"
          "\n"
          "Examples:\n"
          "  vlm preprocess --size 224 cat.jpg dog.png --out prep/\n"
          "  vlm preprocess --size 256 --resize-mode longest photos/*.jpg --out prep256/\n",
          (long long)VLM_DEFAULT_MAX_PIXELS);
}

/* --mean / --std into cfg's floats. */
static int parse3(const char *flag, const char *s, float v[3]) {
  double d[3];
  if (!vlm_app_parse_rgb("vlm preprocess", flag, s, d)) return 0;
  for (int i = 0; i < 3; i++) v[i] = (float)d[i];
  return 1;
}

static void stem_of(const char *path, char *out, size_t n) {
  const char *b = strrchr(path, '/');
  b = b ? b + 1 : path;
  snprintf(out, n, "%s", b);
  char *dot = strrchr(out, '.');
  if (dot && dot != out) *dot = 0;
}

typedef struct { const char *stem; int k; } stem_ref;
static int cmp_stem_ref(const void *a, const void *b) {
  const stem_ref *x = a, *y = b;
  int c = strcmp(x->stem, y->stem);
  return c ? c : (x->k > y->k) - (x->k < y->k);
}

int vlm_cmd_preprocess(int argc, char **argv) {
  vlm_preprocess_cfg cfg;
  vlm_preprocess_cfg_default(&cfg, 224);
  vlm_decode_opts opts = {.max_pixels = VLM_DEFAULT_MAX_PIXELS};
  const char *out_dir = NULL;
  int jpeg_reduce = 0, n_in = 0;
  const char **inputs = calloc((size_t)argc, sizeof *inputs);
  if (!inputs) return 1;
  int rc = 0;
  int paths_only = 0;   /* after "--": file names that start with '-' */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *val = NULL;
    long long v;
#define VALUE()                                                        \
  if (!(val = vlm_app_value("vlm preprocess", argc, argv, &i))) { \
    rc = 2;                                                            \
    goto done;                                                         \
  }
    if (paths_only) {
      inputs[n_in++] = a;
    } else if (!strcmp(a, "--")) {
      paths_only = 1;
    } else if (vlm_app_is_help(a)) {
      usage(stdout);
      free(inputs);
      return 0;
    } else if (!strcmp(a, "--size")) {
      VALUE();
      if (!vlm_app_parse_int("vlm preprocess", "--size", val, 1, 8192, &v)) { rc = 2; goto done; }
      cfg.size = (int)v;
    } else if (!strcmp(a, "--resize-mode")) {
      VALUE();
      if (!vlm_resize_mode_parse(val, &cfg.mode)) {
        fprintf(stderr, "vlm preprocess: --resize-mode expects shortest, squash or longest, got '%s'\n", val);
        rc = 2;
        goto done;
      }
    } else if (!strcmp(a, "--mean")) {
      VALUE();
      if (!parse3("--mean", val, cfg.mean)) { rc = 2; goto done; }
    } else if (!strcmp(a, "--std")) {
      VALUE();
      if (!parse3("--std", val, cfg.std)) { rc = 2; goto done; }
      if (cfg.std[0] == 0 || cfg.std[1] == 0 || cfg.std[2] == 0) {
        fprintf(stderr, "vlm preprocess: --std values must be non-zero\n");
        rc = 2;
        goto done;
      }
    } else if (!strcmp(a, "--max-image-pixels")) {
      VALUE();
      if (!vlm_app_parse_int("vlm preprocess", "--max-image-pixels", val, 1, (long long)1 << 40, &v)) {
        rc = 2;
        goto done;
      }
      opts.max_pixels = v;
    } else if (!strcmp(a, "--jpeg-reduce")) {
      jpeg_reduce = 1;
    } else if (!strcmp(a, "--out")) {
      VALUE();
      out_dir = val;
    } else if (a[0] == '-' && a[1]) {
      rc = vlm_app_bad_arg("vlm preprocess", a);
      goto done;
    } else {
      inputs[n_in++] = a;
    }
#undef VALUE
  }
  if (!out_dir || n_in == 0) {
    fprintf(stderr, "vlm preprocess: %s (see 'vlm preprocess --help')\n", !out_dir ? "--out DIR is required" : "no input images given");
    rc = 2;
    goto done;
  }
  if (jpeg_reduce) opts.jpeg_reduce_min_side = cfg.size;
  if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) {
    fprintf(stderr, "vlm preprocess: cannot create %s: %s\n", out_dir, strerror(errno));
    rc = 1;
    goto done;
  }
  size_t np = (size_t)3 * cfg.size * cfg.size;
  uint8_t *u8 = malloc(np);
  float *px = malloc(np * sizeof(float));
  if (!u8 || !px) {
    fprintf(stderr, "vlm preprocess: out of memory\n");
    free(u8);
    free(px);
    rc = 1;
    goto done;
  }
  /* inputs whose output name an earlier input already takes: sorted by (stem, position), once */
  char *dup = calloc((size_t)n_in + 1, 1);
  stem_ref *refs = malloc(((size_t)n_in + 1) * sizeof *refs);
  char **stems = calloc((size_t)n_in + 1, sizeof *stems);
  int oom = !dup || !refs || !stems;
  for (int k = 0; k < n_in && !oom; k++) {
    char stem[1024];
    stem_of(inputs[k], stem, sizeof stem);
    oom = !(stems[k] = strdup(stem));
    if (!oom) refs[k] = (stem_ref){stems[k], k};
  }
  if (oom) {
    fprintf(stderr, "vlm preprocess: out of memory\n");
    for (int k = 0; stems && k < n_in; k++) free(stems[k]);
    free(u8); free(px); free(dup); free(refs); free(stems);
    rc = 1;
    goto done;
  }
  qsort(refs, (size_t)n_in, sizeof *refs, cmp_stem_ref);
  /* dup 2: the same file as an earlier input of its name (the same path, another spelling of
   * it, a hard link): done once, as the other commands do; dup 1: another file that would
   * write the same output: an error */
  int twice = 0;
  for (int k = 1, g = 0; k < n_in; k++) {
    if (strcmp(refs[k].stem, refs[k - 1].stem)) { g = k; continue; }
    dup[refs[k].k] = 1;
    for (int m = g; m < k && dup[refs[k].k] == 1; m++)
      if (vlm_app_same_file(inputs[refs[m].k], inputs[refs[k].k])) dup[refs[k].k] = 2;
    twice += dup[refs[k].k] == 2;
  }
  if (twice)
    fprintf(stderr, "vlm preprocess: %d image%s named more than once, preprocessed once\n", twice, twice == 1 ? "" : "s");
  int n_ok = 0, n_fail = 0;
  for (int k = 0; k < n_in; k++) {
    char path[4096], dims[64];
    const char *stem = stems[k];
    if (dup[k] == 2) continue;
    if (dup[k]) {
      fprintf(stderr, "vlm preprocess: %s: another input already writes %s.safetensors; skipped\n", inputs[k], stem);
      n_fail++;
      continue;
    }
    vlm_image img;
    vlm_status st = vlm_image_decode_file(inputs[k], &opts, &img);
    if (!st) {
      snprintf(dims, sizeof dims, "%dx%d", img.w, img.h);
      const char *mode = vlm_img_mode_name(img.mode);
      st = vlm_preprocess_image(&img, &cfg, u8, px);
      vlm_image_free(&img);
      if (!st) {
        int64_t shape[3] = {3, cfg.size, cfg.size};
        snprintf(path, sizeof path, "%s/%s.safetensors", out_dir, stem);
        vlm_st_writer *w = vlm_st_writer_new();
        if (!w) st = vlm_error(VLM_ERR_OOM, "out of memory");
        if (!st) st = vlm_st_writer_add(w, "crop_u8", VLM_U8, 3, shape, u8);
        if (!st) st = vlm_st_writer_add(w, "pixels", VLM_F32, 3, shape, px);
        if (!st) st = vlm_st_writer_meta(w, "source", inputs[k]);
        if (!st) st = vlm_st_writer_meta(w, "mode", mode);
        if (!st) st = vlm_st_writer_meta(w, "size", dims);
        if (!st) st = vlm_st_writer_meta(w, "resize_mode", vlm_resize_mode_name(cfg.mode));
        if (!st) st = vlm_st_writer_save(w, path);
        vlm_st_writer_free(w);
        if (st) vlm_error_prefix(st, "%s", inputs[k]);
      } else {
        vlm_error_prefix(st, "%s", inputs[k]);
      }
    }
    if (st) {
      fprintf(stderr, "vlm preprocess: %s\n", vlm_last_error());
      n_fail++;
    } else {
      n_ok++;
    }
  }
  free(u8);
  free(px);
  for (int k = 0; k < n_in; k++) free(stems[k]);
  free(dup);
  free(refs);
  free(stems);
  printf("preprocessed %d image%s to %s (%dx%d, %s)%s", n_ok, n_ok == 1 ? "" : "s", out_dir, cfg.size, cfg.size,
         vlm_resize_mode_name(cfg.mode), n_fail ? "" : "\n");
  if (n_fail) printf("; %d failed\n", n_fail);
  rc = n_fail ? 1 : 0;
done:
  free(inputs);
  return rc;
}
