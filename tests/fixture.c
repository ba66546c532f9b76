/* Fixture comparisons (tests/fixture.h). */
#include "fixture.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gradcheck.h"

int vt_fixture_open(const char *dir, vlm_safetensors *in, vlm_safetensors *out, vlm_safetensors *grads) {
  static const char *const names[3] = {"inputs", "outputs", "grads"};
  vlm_safetensors *st[3] = {in, out, grads};
  for (int i = 0; i < 3; i++) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, names[i]);
    if (vlm_st_open(st[i], path) != VLM_OK) {
      CHECK(0, "%s", vlm_last_error());
      while (i-- > 0) vlm_st_close(st[i]);
      return 0;
    }
  }
  return 1;
}

void vt_fixture_close(vlm_safetensors *in, vlm_safetensors *out, vlm_safetensors *grads) {
  vlm_st_close(in);
  vlm_st_close(out);
  vlm_st_close(grads);
}

const vlm_st_entry *vt_st_need(const vlm_safetensors *st, const char *name) {
  const vlm_st_entry *e = vlm_st_find(st, name);
  CHECK(e != NULL, "%s: no tensor %s", st->path, name);
  return e;
}

float *vt_st_read_all(const vlm_safetensors *st, const vlm_st_entry *e, int64_t *n_out) {
  int64_t n = 1;
  for (int d = 0; d < e->ndim; d++) n *= e->shape[d];
  float *x = vt_alloc(n > 0 ? n : 1);
  vlm_status s = vlm_st_read_f32(st, e, x, n);
  CHECK(s == VLM_OK, "%s", vlm_last_error());
  if (n_out) *n_out = n;
  return x;
}

double vt_fixture_compare(const char *what, const char *name, const float *got, int64_t n_got,
                          const vlm_safetensors *ref, int kind, double loose) {
  const vlm_st_entry *e = vt_st_need(ref, name);
  if (!e) return INFINITY;
  int64_t n;
  float *r = vt_st_read_all(ref, e, &n);
  CHECK(n == n_got, "%s: %s has %lld elements, the fixture %lld", what, name, (long long)n_got, (long long)n);
  double worst = 0;
  int64_t wi = 0, bad = n == n_got ? -1 : 0;
  for (int64_t i = 0; i < n && i < n_got; i++) {
    double d = fabs((double)got[i] - r[i]), rel = d / fmax(fabs(r[i]), 1e-30);
    int good = kind == 0 ? d <= 1e-5 * loose
               : kind == 1 ? (d <= 1e-5 * loose || rel <= 1e-4 * loose)
                           : rel <= 1e-5 * loose;
    if ((!good || isnan(got[i])) && bad < 0) bad = i;
    double m = kind == 2 ? rel : d;
    if (isnan(m)) m = INFINITY;
    if (m > worst) {
      worst = m;
      wi = i;
    }
  }
  int in_range = bad >= 0 && bad < n && bad < n_got;
  CHECK(bad < 0, "%s: %s differs from open_clip: element %lld expected %.8g got %.8g; max %s error %.3g at %lld",
        what, name, (long long)bad, in_range ? r[bad] : 0.0, in_range ? got[bad] : 0.0,
        kind == 2 ? "relative" : "abs", worst, (long long)wi);
  free(r);
  return worst;
}

void vt_fixture_compare_grad(void *ctx, const char *name, vlm_tensor *t) {
  vt_grad_ctx *g = ctx;
  const vlm_st_entry *e = vt_st_need(g->ref, name);
  if (!e) return;
  int64_t n, nt = vlm_numel(t);
  float *r = vt_st_read_all(g->ref, e, &n);
  CHECK(n == nt, "%s: grad %s has %lld elements here, %lld in the fixture", g->what, name, (long long)nt,
        (long long)n);
  if (n == nt) {
    const float *x = vlm_f32(t);
    double rel = vt_max_rel(x, r, n, 1e-30);
    if (isnan(rel)) rel = INFINITY;
    int64_t wi = 0;
    double w = -1;
    for (int64_t i = 0; rel > g->tol && i < n; i++) { /* name the worst element */
      double d = isnan(x[i]) ? INFINITY : fabs((double)x[i] - r[i]);
      if (d > w) {
        w = d;
        wi = i;
      }
    }
    CHECK(rel <= g->tol, "%s: gradient of %s differs: %.3g of the tensor's max (tol %.1g); element %lld expected "
          "%.8g got %.8g", g->what, name, rel, g->tol, (long long)wi, n ? r[wi] : 0.0, n ? x[wi] : 0.0);
    if (rel > g->worst) {
      g->worst = rel;
      snprintf(g->worst_name, sizeof g->worst_name, "%s", name);
    }
  }
  g->checked++;
  free(r);
}

vt_grad_ctx vt_fixture_compare_grads(const vlm_safetensors *ref, const char *what, vt_model_visit visit,
                                     void *model) {
  vt_grad_ctx gc = {ref, what, 1e-4, 0, 0, ""};
  visit(model, vt_fixture_compare_grad, &gc);
  CHECK(gc.checked == ref->n_entries, "%s: %d gradients compared, the fixture has %d", what, gc.checked,
        ref->n_entries);
  return gc;
}

int vt_fixture_inputs(const vlm_safetensors *in, vlm_tensor *images, vlm_tensor *text, vlm_tensor *text32) {
  const vlm_st_entry *ei = vt_st_need(in, "images"), *et = vt_st_need(in, "text");
  const vlm_st_entry *et32 = vt_st_need(in, "text_i32");
  if (!ei || !et || !et32) return 0;
  *images = vlm_st_tensor(ei);
  *text = vlm_st_tensor(et);
  *text32 = vlm_st_tensor(et32);
  return 1;
}

double vt_min_cosine(const vlm_tensor *a, const vlm_tensor *b) {
  int64_t R = vlm_rows(a), C = vlm_cols(a);
  double worst = 1;
  for (int64_t r = 0; r < R; r++) {
    double d = 0, na = 0, nb = 0;
    for (int64_t k = 0; k < C; k++) {
      double x = vlm_f32(a)[r * C + k], y = vlm_f32(b)[r * C + k];
      d += x * y; na += x * x; nb += y * y;
    }
    double cs = d / sqrt(na * nb);
    if (!(cs >= worst)) worst = cs;
  }
  return worst;
}

int vt_pages_released(const vlm_tensor *t) {
  long page = sysconf(_SC_PAGESIZE);
  uintptr_t lo = ((uintptr_t)t->data + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
  uintptr_t hi = ((uintptr_t)t->data + vlm_nbytes(t)) & ~((uintptr_t)page - 1);
  if (page <= 0 || hi <= lo) return -1;
  for (const unsigned char *q = (const unsigned char *)lo; q < (const unsigned char *)hi; q++)
    if (*q) return 0;
  return 1;
}

void vt_compare_files(const char *dir, const char *out_path, const char *grads_path, vt_grads_loader load,
                      vt_model_visit visit, void (*free_model)(void *model)) {
  char path[4096];
  vlm_safetensors ref, got;
  snprintf(path, sizeof path, "%s/outputs.safetensors", dir);
  if (vlm_st_open(&ref, path) != VLM_OK || vlm_st_open(&got, out_path) != VLM_OK) {
    CHECK(0, "%s", vlm_last_error());
    return;
  }
  for (int i = 0; i < ref.n_entries; i++) {
    const char *name = ref.entries[i].name;
    const vlm_st_entry *e = vt_st_need(&got, name);
    if (!e) continue;
    CHECK(e->ndim == ref.entries[i].ndim && (e->end - e->begin) == (ref.entries[i].end - ref.entries[i].begin),
          "%s: %s has another shape than the fixture's", out_path, name);
    if (e->end - e->begin != ref.entries[i].end - ref.entries[i].begin) continue;
    int64_t nx;
    float *x = vt_st_read_all(&got, e, &nx);
    int kind = strstr(name, "logits") ? 1 : (strstr(name, "features") || strstr(name, "tokens")) ? 0 : 2;
    vt_fixture_compare(out_path, name, x, nx, &ref, kind, 1.0);
    free(x);
  }
  CHECK(got.n_entries == ref.n_entries, "%s: %d tensors, the fixture has %d", out_path, got.n_entries,
        ref.n_entries);
  vlm_st_close(&ref);
  vlm_st_close(&got);
  if (!grads_path) return;
  void *model = load(dir, grads_path);
  if (!model) return;
  vlm_safetensors rg;
  snprintf(path, sizeof path, "%s/grads.safetensors", dir);
  if (vlm_st_open(&rg, path) == VLM_OK) {
    vt_fixture_compare_grads(&rg, grads_path, visit, model);
    vlm_st_close(&rg);
  }
  free_model(model);
}

int vt_parity_main(int argc, char **argv, const char *probe, void (*parity)(const char *dir),
                   void (*units)(const char *shared), vt_grads_loader load, vt_model_visit visit,
                   void (*free_model)(void *model)) {
  if (argc >= 4 && !strcmp(argv[1], "--compare")) {
    vt_compare_files(argv[2], argv[3], argc >= 5 ? argv[4] : NULL, load, visit, free_model);
    return vt_finish();
  }
  const char *arg = vt_shared_dir(argc, argv);
  if (!arg) vt_skip("no fixture directory or ../shared given");
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", arg);
  if (access(path, R_OK) == 0) {
    parity(arg);
    return vt_finish();
  }
  snprintf(path, sizeof path, "%s/fixtures/%s/config.json", arg, probe);
  if (access(path, R_OK) != 0) vt_skip("fixtures not found");
  units(arg);
  return vt_finish();
}
