/* vlm shapes: write the synthetic shapes set as PNG files + a TSV (the standard format). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apps/apps.h"
#include "apps/tools.h"
#include "core/core.h"
#include "datasets/datasets.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: vlm shapes --out DIR [--n N] [--split train|val] [--size S] [--seed S] [--json]\n"
          "\n"
          "Writes the built-in synthetic shapes set: N images of one or two coloured shapes\n"
          "(8 colours x 6 kinds) on neutral backgrounds, with captions naming them, as\n"
          "  DIR/images/NNNNNN.png   RGB PNG files\n"
          "  DIR/captions.tsv        filepath<TAB>title (val: also label, the class index), the\n"
          "                          format --train-data / --val-data read (--dataset-type csv)\n"
          "  DIR/classnames.txt      val: the 48 class names (\"red circle\"), one per line by index\n"
          "  DIR/unseen.txt          val: the classes never shown in the train split\n"
          "The same (split, seed, index) always gives the same image and caption, so the files equal\n"
          "what '--train-data shapes' generates on the fly. Each file is written to a temporary name\n"
          "and renamed; captions.tsv is written last.\n"
          "\n"
          "Options:\n"
          "  --out DIR      output folder (created if missing)\n"
          "  --n N          number of images (default: 20000 train, 1000 val)\n"
          "  --split S      train (one or two shapes; 6 colour-shape combinations held out) or val\n"
          "                 (one shape, all 48 combinations, label = class) (default train)\n"
          "  --size S       image side in pixels (default 64)\n"
          "  --seed S       generator seed (default 0)\n"
          "  --json         print a JSON summary on stdout\n"
          "\n"
          "Examples:\n"
          "  vlm shapes --out shapes-train --n 20000\n"
          "  vlm shapes --out shapes-val --n 1000 --split val --size 96\n");
}

/* PNG of an RGB image to path, through a temporary name and a rename. */
static int write_png(const char *path, const vlm_image *im, char *err, size_t errn) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f) { snprintf(err, errn, "%s: cannot write: %s", tmp, strerror(errno)); return 0; }
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)im->h);
  if (!png || !info || !rows) {
    png_destroy_write_struct(&png, &info);
    free(rows);
    fclose(f);
    remove(tmp);
    snprintf(err, errn, "%s: out of memory", path);
    return 0;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    free(rows);
    fclose(f);
    remove(tmp);
    snprintf(err, errn, "%s: PNG write failed", path);
    return 0;
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, (png_uint_32)im->w, (png_uint_32)im->h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < im->h; y++) rows[y] = im->data + (size_t)y * im->w * 3;
  png_write_image(png, rows);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  free(rows);
  int bad = ferror(f);
  if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
    snprintf(err, errn, "%s: write failed: %s", path, strerror(errno));
    remove(tmp);
    return 0;
  }
  return 1;
}

int vlm_cmd_shapes(int argc, char **argv) {
  const char *out = NULL;
  long long n = -1, size = 64, seed = 0;
  int val = 0, json = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (vlm_app_is_help(a)) { usage(stdout); return 0; }
    if (!strcmp(a, "--json")) { json = 1; continue; }
    if (strcmp(a, "--out") && strcmp(a, "--n") && strcmp(a, "--size") && strcmp(a, "--seed") && strcmp(a, "--split"))
      return vlm_app_bad_arg("vlm shapes", a);
    const char *v = vlm_app_value("vlm shapes", argc, argv, &i);
    if (!v) return 2;
    if (!strcmp(a, "--out")) out = v;
    else if (!strcmp(a, "--n")) { if (!vlm_app_parse_int("vlm shapes", "--n", v, 1, 100000000, &n)) return 2; }
    else if (!strcmp(a, "--size")) { if (!vlm_app_parse_int("vlm shapes", "--size", v, 8, 4096, &size)) return 2; }
    else if (!strcmp(a, "--seed")) { if (!vlm_app_parse_int("vlm shapes", "--seed", v, 0, (long long)1 << 62, &seed)) return 2; }
    else if (!strcmp(v, "train")) val = 0;   /* --split */
    else if (!strcmp(v, "val")) val = 1;
    else { fprintf(stderr, "vlm shapes: --split expects train or val, got '%s'\n", v); return 2; }
  }
  if (!out) {
    fprintf(stderr, "vlm shapes: --out DIR is required (see 'vlm shapes --help')\n");
    return 2;
  }
  if (n < 0) n = val ? 1000 : 20000;
  char path[4096];
  if (mkdir(out, 0777) != 0 && errno != EEXIST) {
    fprintf(stderr, "vlm shapes: %s: cannot create: %s\n", out, strerror(errno));
    return 1;
  }
  snprintf(path, sizeof path, "%s/images", out);
  if (mkdir(path, 0777) != 0 && errno != EEXIST) {
    fprintf(stderr, "vlm shapes: %s: cannot create: %s\n", path, strerror(errno));
    return 1;
  }
  int width = 6;
  for (long long m = 1000000; m < n; m *= 10) width++;
  char **caps = calloc((size_t)n, sizeof *caps);
  int *labels = malloc((size_t)n * sizeof *labels);
  if (!caps || !labels) { free(caps); free(labels); fprintf(stderr, "vlm shapes: out of memory\n"); return 1; }
  volatile int failed = 0;
  char err[4400] = "";
#pragma omp parallel for schedule(dynamic, 16)
  for (long long i = 0; i < n; i++) {
    if (failed) continue;
    vlm_image im;
    int lab;
    char *cap;
    char p[4200], e[4400];
    if (vlm_shapes_generate(val ? VLM_SHAPES_VAL : VLM_SHAPES_TRAIN, (uint64_t)seed, i, (int)size, &im, &cap, &lab)) {
#pragma omp critical
      { failed = 1; snprintf(err, sizeof err, "%s", vlm_last_error()); }
      continue;
    }
    snprintf(p, sizeof p, "%s/images/%0*lld.png", out, width, i);
    if (!write_png(p, &im, e, sizeof e)) {
#pragma omp critical
      { failed = 1; snprintf(err, sizeof err, "%s", e); }
    }
    vlm_image_free(&im);
    caps[i] = cap;
    labels[i] = lab;
  }
  int rc = 0;
  if (failed) {
    fprintf(stderr, "vlm shapes: %s\n", err);
    rc = 1;
    goto done;
  }
  if (val) {
    size_t cap = 64 * VLM_SHAPES_CLASSES, k = 0, ku = 0;
    char *buf = malloc(cap), *ubuf = malloc(cap);
    if (!buf || !ubuf) { free(buf); free(ubuf); fprintf(stderr, "vlm shapes: out of memory\n"); rc = 1; goto done; }
    for (int c = 0; c < VLM_SHAPES_CLASSES; c++) {
      k += (size_t)snprintf(buf + k, cap - k, "%s\n", vlm_shapes_class_name(c));
      if (vlm_shapes_class_unseen(c)) ku += (size_t)snprintf(ubuf + ku, cap - ku, "%s\n", vlm_shapes_class_name(c));
    }
    snprintf(path, sizeof path, "%s/classnames.txt", out);
    vlm_status st = vlm_write_file_atomic(path, buf, k);
    if (!st) {
      snprintf(path, sizeof path, "%s/unseen.txt", out);
      st = vlm_write_file_atomic(path, ubuf, ku);
    }
    free(buf);
    free(ubuf);
    if (st) { fprintf(stderr, "vlm shapes: %s\n", vlm_last_error()); rc = 1; goto done; }
  }
  /* the TSV last: a complete captions.tsv means every image (and the class lists) is in place */
  vlm_atomic_file af;
  snprintf(path, sizeof path, "%s/captions.tsv", out);
  if (vlm_atomic_open(&af, path)) { fprintf(stderr, "vlm shapes: %s\n", vlm_last_error()); rc = 1; goto done; }
  fprintf(af.f, val ? "filepath\ttitle\tlabel\n" : "filepath\ttitle\n");
  for (long long i = 0; i < n; i++) {
    if (val) fprintf(af.f, "images/%0*lld.png\t%s\t%d\n", width, i, caps[i], labels[i]);
    else fprintf(af.f, "images/%0*lld.png\t%s\n", width, i, caps[i]);
  }
  if (vlm_atomic_commit(&af)) { fprintf(stderr, "vlm shapes: %s\n", vlm_last_error()); rc = 1; goto done; }
  if (json)
  {
    printf("{\"out\": ");
    vlm_tools_json_str(stdout, out);
    printf(", \"split\": \"%s\", \"n\": %lld, \"size\": %lld, \"seed\": %lld, \"tsv\": \"captions.tsv\"}\n",
           val ? "val" : "train", n, size, seed);
  }
  else
    printf("wrote %lld %s images (%lldx%lld) and %s/captions.tsv\n", n, val ? "val" : "train", size, size, out);
done:
  for (long long i = 0; i < n; i++) free(caps[i]);
  free(caps);
  free(labels);
  return rc;
}
