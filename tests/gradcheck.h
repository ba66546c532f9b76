/* Test helpers shared by the unit tests: counters and CHECK, comparisons, and a
 * finite-difference gradient checker.
 *
 * Each test program calls vt_finish() last: it prints "N passed, M failed" and
 * returns the exit code (1 if anything failed). A test that cannot run here
 * calls vt_skip(why), which prints the reason and exits 77 (ctest: Skipped). */
#ifndef VLM_TESTS_GRADCHECK_H
#define VLM_TESTS_GRADCHECK_H
#include <stdint.h>
#include <stdio.h>
#include "core/core.h"

extern int vt_passed, vt_failed;
#define CHECK(cond, ...)                                                   \
  do {                                                                     \
    if (cond) { vt_passed++; }                                             \
    else {                                                                 \
      vt_failed++;                                                         \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                 \
      fprintf(stderr, __VA_ARGS__);                                        \
      fputc('\n', stderr);                                                 \
    }                                                                      \
  } while (0)

int vt_finish(void);
void vt_skip(const char *why) __attribute__((noreturn));
/* ../shared from argv[1] (ctest passes it) or VLM_SHARED_DIR; NULL if absent. */
const char *vt_shared_dir(int argc, char **argv);

/* max |got - ref| / max(max |ref|, floor): error relative to the tensor's scale. */
double vt_max_rel(const float *got, const float *ref, int64_t n, double floor);
double vt_max_abs(const float *got, const float *ref, int64_t n);
void vt_fill_normal(float *x, int64_t n, uint64_t seed, float std);
float *vt_alloc(int64_t n);
/* A tensor's values as F32 on the host (F32 on any device, or another float type on the CPU), malloc'd. */
float *vt_host_f32(const vlm_tensor *t);
/* Whole-file helpers for tests: write aborts on failure; read returns NULL when the
 * file cannot be read, else a malloc'd buffer with a NUL after the n bytes. */
void vt_write_file(const char *path, const void *p, size_t n);
uint8_t *vt_read_file(const char *path, size_t *n);
/* w x h RGB pixels (rows of 3w bytes) as a PNG file in memory: malloc'd, *n bytes; aborts on failure. */
uint8_t *vt_png_rgb(int w, int h, const uint8_t *rgb, size_t *n);
/* Tar archives (ustar) into f: a header of the given type ('0' a file, '5' a folder, 'x' a pax
 * record, ...) for size bytes; the data padded to 512; both for one file. */
void vt_tar_header(FILE *f, const char *name, size_t size, char type);
void vt_tar_data(FILE *f, const void *d, size_t n);
void vt_tar_add(FILE *f, const char *name, const void *d, size_t n);
/* DIR/NAME in one of 8 rotating static buffers (each valid until 8 later calls). */
const char *vt_path(const char *dir, const char *name);
/* vt_path(dir, name), made as a folder (one already there is kept). */
const char *vt_subdir(const char *dir, const char *name);
/* The bytes of from written to to (vt_write_file): 1, or 0 when from cannot be read (nothing written). */
int vt_copy_file(const char *from, const char *to);
/* vt_write_file of DIR/NAME. */
void vt_put(const char *dir, const char *name, const void *p, size_t n);
/* A fresh folder /tmp/PREFIX-XXXXXX in dir[n]: 1, or a failed CHECK and 0. */
int vt_make_tmp_dir(char *dir, size_t n, const char *prefix);
/* Remove dir and everything under it (links are removed, not followed). */
void vt_rm_tree(const char *dir);
/* Runs fn(ctx) in a child process and CHECKs that it aborts (a VLM_CHECK) with a
 * message containing needle1 (and needle2 when not NULL). fn must fail before any
 * OpenMP parallel region: libgomp is not usable after fork. */
void vt_expect_abort(const char *what, void (*fn)(void *), void *ctx, const char *needle1, const char *needle2);   /* zeroed, aborts on failure; free with free() */

/* Finite-difference gradient check of a function out = f(inputs).
 * The checker draws random upstream weights w into dout, and compares the
 * analytic gradient of L = sum(w * out) (backward, which accumulates into each
 * input's grad buffer after the checker zeroed it) with double-precision
 * central differences of L over a sample of each input's elements.
 * An input passes when ||g_analytic - g_numeric|| / ||g_numeric|| < tol and
 * max |g_a - g_n| / max |g_n| < tol over the sampled elements. */
typedef struct {
  const char *name;
  float *x;      /* values, perturbed in place and restored */
  float *grad;   /* analytic gradient, filled by backward */
  int64_t n;
} vt_gc_input;

typedef struct {
  void (*forward)(void *ctx);
  void (*backward)(void *ctx);
  void *ctx;
  float *out;
  float *dout;
  int64_t n_out;
  vt_gc_input *inputs;
  int n_inputs;
  double h;         /* step; 0 = 1e-2 */
  double tol;       /* 0 = 1e-3 */
  int max_checks;   /* sampled elements per input; 0 = 256 */
  uint64_t seed;
} vt_gradcheck;

/* Returns 0 when every input passes; prints one line per input. Counts as CHECKs. */
int vt_gradcheck_run(const char *what, vt_gradcheck *g);
#endif
