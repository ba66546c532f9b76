/* Broadcast add: known values, gradient check (both kernel modes), fast vs
 * reference over several broadcast shapes, aliasing, += semantics of the
 * backward, and the CUDA kernel against the CPU when a GPU is present. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

static const char *mode_name(int m) { return m == VLM_KERNELS_REF ? "ref" : "fast"; }

typedef struct {
  int nda, ndb;
  int64_t sa[4], sb[4], na, nb;
  float *a, *b, *out, *dout, *da, *db;
} add_case;

static void add_alloc(add_case *k, int nda, const int64_t *sa, int ndb, uint64_t seed) {
  k->nda = nda;
  k->ndb = ndb;
  k->na = 1;
  for (int i = 0; i < nda; i++) k->na *= (k->sa[i] = sa[i]);
  k->nb = 1;
  for (int i = 0; i < ndb; i++) k->nb *= (k->sb[i] = sa[nda - ndb + i]);
  k->a = vt_alloc(k->na);
  k->b = vt_alloc(k->nb);
  k->out = vt_alloc(k->na);
  k->dout = vt_alloc(k->na);
  k->da = vt_alloc(k->na);
  k->db = vt_alloc(k->nb);
  vt_fill_normal(k->a, k->na, seed, 1.0f);
  vt_fill_normal(k->b, k->nb, seed + 1, 1.0f);
  vt_fill_normal(k->dout, k->na, seed + 2, 1.0f);
}

static void add_free(add_case *k) { free(k->a); free(k->b); free(k->out); free(k->dout); free(k->da); free(k->db); }

static void add_forward(void *ctx) {
  add_case *k = ctx;
  vlm_tensor a = vlm_tensor_cpu_f32(k->a, k->nda, k->sa), b = vlm_tensor_cpu_f32(k->b, k->ndb, k->sb);
  vlm_tensor out = vlm_tensor_cpu_f32(k->out, k->nda, k->sa);
  vlm_add_forward(&out, &a, &b);
}

static void add_backward(void *ctx) {
  add_case *k = ctx;
  vlm_tensor dout = vlm_tensor_cpu_f32(k->dout, k->nda, k->sa), da = vlm_tensor_cpu_f32(k->da, k->nda, k->sa);
  vlm_tensor db = vlm_tensor_cpu_f32(k->db, k->ndb, k->sb);
  vlm_add_backward(&da, &db, &dout);
}

static void test_known(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    float a[6] = {1, 2, 3, 4, 5, 6}, b[3] = {10, 20, 30}, out[6];
    int64_t sa[2] = {2, 3}, sb[1] = {3};
    vlm_tensor ta = vlm_tensor_cpu_f32(a, 2, sa), tb = vlm_tensor_cpu_f32(b, 1, sb), to = vlm_tensor_cpu_f32(out, 2, sa);
    vlm_add_forward(&to, &ta, &tb);
    CHECK(out[0] == 11 && out[2] == 33 && out[3] == 14 && out[5] == 36, "%s: [2,3] + [3]", mode_name(mode));
    float dout[6] = {1, 2, 3, 4, 5, 6}, da[6] = {1, 1, 1, 1, 1, 1}, db[3] = {100, 100, 100};
    vlm_tensor tdo = vlm_tensor_cpu_f32(dout, 2, sa), tda = vlm_tensor_cpu_f32(da, 2, sa);
    vlm_tensor tdb = vlm_tensor_cpu_f32(db, 1, sb);
    vlm_add_backward(&tda, &tdb, &tdo);
    CHECK(da[0] == 2 && da[5] == 7 && db[0] == 105 && db[1] == 107 && db[2] == 109, "%s: backward %g %g %g",
          mode_name(mode), db[0], db[1], db[2]);
    vlm_add_backward(NULL, &tdb, &tdo); /* da not needed */
    CHECK(db[0] == 110 && da[0] == 2, "%s: NULL da", mode_name(mode));
    vlm_add_backward(&tda, NULL, &tdo); /* db not needed */
    CHECK(db[0] == 110 && da[0] == 3, "%s: NULL db", mode_name(mode));
    /* out aliases a (the residual stream updated in place). */
    vlm_add_forward(&ta, &ta, &tb);
    CHECK(a[0] == 11 && a[5] == 36, "%s: in place", mode_name(mode));
  }
}

static void test_gradcheck(void) {
  int64_t s3[3] = {3, 4, 5};
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    for (int ndb = 0; ndb <= 3; ndb++) {
      add_case k;
      add_alloc(&k, 3, s3, ndb, 40 + ndb);
      vt_gc_input in[2] = {{"a", k.a, k.da, k.na}, {"b", k.b, k.db, k.nb}};
      vt_gradcheck g = {add_forward, add_backward, &k, k.out, k.dout, k.na, in, 2, 0, 0, 0, 9 + ndb};
      char what[64];
      snprintf(what, sizeof what, "add %s [3,4,5] + %d trailing dims", mode_name(mode), ndb);
      vt_gradcheck_run(what, &g);
      add_free(&k);
    }
  }
}

static void test_fast_vs_ref(int nda, const int64_t *sa, int ndb) {
  add_case r, f;
  add_alloc(&r, nda, sa, ndb, 70);
  add_alloc(&f, nda, sa, ndb, 70);
  vt_fill_normal(r.da, r.na, 71, 1.0f);
  vt_fill_normal(r.db, r.nb, 72, 1.0f);
  memcpy(f.da, r.da, sizeof(float) * (size_t)r.na);
  memcpy(f.db, r.db, sizeof(float) * (size_t)r.nb);
  vlm_set_kernel_mode(VLM_KERNELS_REF);
  add_forward(&r);
  add_backward(&r);
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  add_forward(&f);
  add_backward(&f);
  double e_o = vt_max_rel(f.out, r.out, r.na, 1e-6), e_a = vt_max_rel(f.da, r.da, r.na, 1e-6);
  double e_b = vt_max_rel(f.db, r.db, r.nb, 1e-6);
  char s[128];
  vlm_tensor ta = vlm_tensor_cpu_f32(r.a, nda, sa);
  vlm_shape_str(&ta, s, sizeof s);
  CHECK(e_o < 1e-5 && e_a < 1e-5 && e_b < 1e-5, "add fast vs ref a %s, b = last %d dims: out %.2g da %.2g db %.2g",
        s, ndb, e_o, e_a, e_b);
  if (getenv("VT_VERBOSE"))
    printf("  add fast vs ref a %s, b = last %d dims: out %.2g da %.2g db %.2g\n", s, ndb, e_o, e_a, e_b);
  add_free(&r);
  add_free(&f);
}

/* The CUDA add against the CPU reference (only where a GPU is present). */
static void test_cuda(void) {
  if (!vlm_cuda_available()) {
    printf("no usable GPU (%s): CUDA add not tested here\n", vlm_cuda_describe());
    return;
  }
  int64_t sa[3] = {8, 77, 512};
  add_case r;
  add_alloc(&r, 3, sa, 2, 90);
  vt_fill_normal(r.da, r.na, 91, 1.0f);
  vt_fill_normal(r.db, r.nb, 92, 1.0f);
  size_t ba = sizeof(float) * (size_t)r.na, bb = sizeof(float) * (size_t)r.nb;
  float *ga = vlm_device_alloc(VLM_CUDA, ba), *gb = vlm_device_alloc(VLM_CUDA, bb);
  float *go = vlm_device_alloc(VLM_CUDA, ba), *gdo = vlm_device_alloc(VLM_CUDA, ba);
  float *gda = vlm_device_alloc(VLM_CUDA, ba), *gdb = vlm_device_alloc(VLM_CUDA, bb);
  CHECK(ga && gb && go && gdo && gda && gdb, "cuda alloc");
  if (!(ga && gb && go && gdo && gda && gdb)) return;
  vlm_memcpy(ga, VLM_CUDA, r.a, VLM_CPU, ba);
  vlm_memcpy(gb, VLM_CUDA, r.b, VLM_CPU, bb);
  vlm_memcpy(gdo, VLM_CUDA, r.dout, VLM_CPU, ba);
  vlm_memcpy(gda, VLM_CUDA, r.da, VLM_CPU, ba);
  vlm_memcpy(gdb, VLM_CUDA, r.db, VLM_CPU, bb);
  vlm_set_kernel_mode(VLM_KERNELS_REF);
  add_forward(&r);
  add_backward(&r);
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  vlm_tensor ta = vlm_tensor_make(ga, VLM_F32, VLM_CUDA, 3, sa), tb = vlm_tensor_make(gb, VLM_F32, VLM_CUDA, 2, sa + 1);
  vlm_tensor to = vlm_tensor_make(go, VLM_F32, VLM_CUDA, 3, sa), tdo = vlm_tensor_make(gdo, VLM_F32, VLM_CUDA, 3, sa);
  vlm_tensor tda = vlm_tensor_make(gda, VLM_F32, VLM_CUDA, 3, sa), tdb = vlm_tensor_make(gdb, VLM_F32, VLM_CUDA, 2, sa + 1);
  vlm_add_forward(&to, &ta, &tb);
  vlm_add_backward(&tda, &tdb, &tdo);
  float *o = vt_alloc(r.na), *da = vt_alloc(r.na), *db = vt_alloc(r.nb);
  vlm_memcpy(o, VLM_CPU, go, VLM_CUDA, ba);
  vlm_memcpy(da, VLM_CPU, gda, VLM_CUDA, ba);
  vlm_memcpy(db, VLM_CPU, gdb, VLM_CUDA, bb);
  double e_o = vt_max_rel(o, r.out, r.na, 1e-6), e_a = vt_max_rel(da, r.da, r.na, 1e-6);
  double e_b = vt_max_rel(db, r.db, r.nb, 1e-6);
  CHECK(e_o < 1e-5 && e_a < 1e-5 && e_b < 1e-5, "add cuda vs ref: out %.2g da %.2g db %.2g", e_o, e_a, e_b);
  printf("  add cuda vs ref [8,77,512] + [77,512]: out %.2g da %.2g db %.2g\n", e_o, e_a, e_b);
  free(o); free(da); free(db);
  vlm_device_free(VLM_CUDA, ga); vlm_device_free(VLM_CUDA, gb); vlm_device_free(VLM_CUDA, go);
  vlm_device_free(VLM_CUDA, gdo); vlm_device_free(VLM_CUDA, gda); vlm_device_free(VLM_CUDA, gdb);
  add_free(&r);
}

int main(void) {
  test_known();
  test_gradcheck();
  struct { int nda; int64_t sa[4]; int ndb; } cases[] = {
      {1, {1}, 1},           {1, {7}, 1},          {1, {7}, 0},          {2, {5, 1}, 1},
      {2, {1, 9}, 1},        {3, {4, 5, 6}, 1},    {3, {4, 5, 6}, 2},    {3, {4, 5, 6}, 3},
      {2, {400, 768}, 1},    {2, {400, 768}, 2},   {3, {50, 8, 768}, 2}, {3, {3, 1001, 17}, 1},
      {3, {32, 77, 512}, 2}, {2, {20000, 3}, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_fast_vs_ref(cases[i].nda, cases[i].sa, cases[i].ndb);
  test_cuda();
  return vt_finish();
}
