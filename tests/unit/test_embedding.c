/* Token + position embedding: known values with I32 and I64 ids, pos NULL and
 * pos longer than L, gradient check of table and pos (both kernel modes),
 * fast vs reference, += semantics, determinism across thread counts, and the
 * out-of-range id check (in a child process: it aborts). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gradcheck.h"

static const char *mode_name(int m) { return m == VLM_KERNELS_REF ? "ref" : "fast"; }

typedef struct {
  int64_t B, L, V, W, P;
  int use_pos, is64;
  int32_t *id32;
  int64_t *id64;
  float *table, *pos, *out, *dout, *dtable, *dpos;
} emb_case;

static void emb_alloc(emb_case *k, int64_t B, int64_t L, int64_t V, int64_t W, int64_t P, int use_pos, int is64,
                      uint64_t seed) {
  k->B = B; k->L = L; k->V = V; k->W = W; k->P = P; k->use_pos = use_pos; k->is64 = is64;
  k->id32 = calloc((size_t)(B * L), sizeof(int32_t));
  k->id64 = calloc((size_t)(B * L), sizeof(int64_t));
  vlm_rng r;
  vlm_rng_seed(&r, seed);
  for (int64_t i = 0; i < B * L; i++) {
    /* Skewed ids: a third of the tokens are id 0 (padding), so rows repeat. */
    int64_t id = vlm_rng_below(&r, 3) == 0 ? 0 : (int64_t)vlm_rng_below(&r, (uint64_t)V);
    k->id32[i] = (int32_t)id;
    k->id64[i] = id;
  }
  k->table = vt_alloc(V * W);
  k->pos = vt_alloc(P * W);
  k->out = vt_alloc(B * L * W);
  k->dout = vt_alloc(B * L * W);
  k->dtable = vt_alloc(V * W);
  k->dpos = vt_alloc(P * W);
  vt_fill_normal(k->table, V * W, seed + 1, 1.0f);
  vt_fill_normal(k->pos, P * W, seed + 2, 1.0f);
  vt_fill_normal(k->dout, B * L * W, seed + 3, 1.0f);
}

static void emb_free(emb_case *k) {
  free(k->id32); free(k->id64); free(k->table); free(k->pos); free(k->out); free(k->dout); free(k->dtable);
  free(k->dpos);
}

static vlm_tensor ids_tensor(emb_case *k) {
  int64_t s[2] = {k->B, k->L};
  return k->is64 ? vlm_tensor_make(k->id64, VLM_I64, VLM_CPU, 2, s) : vlm_tensor_make(k->id32, VLM_I32, VLM_CPU, 2, s);
}

static void emb_forward(void *ctx) {
  emb_case *k = ctx;
  int64_t so[3] = {k->B, k->L, k->W}, st[2] = {k->V, k->W}, sp[2] = {k->P, k->W};
  vlm_tensor ids = ids_tensor(k), out = vlm_tensor_cpu_f32(k->out, 3, so);
  vlm_tensor table = vlm_tensor_cpu_f32(k->table, 2, st), pos = vlm_tensor_cpu_f32(k->pos, 2, sp);
  vlm_embedding_forward(&out, &ids, &table, k->use_pos ? &pos : NULL);
}

static void emb_backward(void *ctx) {
  emb_case *k = ctx;
  int64_t so[3] = {k->B, k->L, k->W}, st[2] = {k->V, k->W}, sp[2] = {k->P, k->W};
  vlm_tensor ids = ids_tensor(k), dout = vlm_tensor_cpu_f32(k->dout, 3, so);
  vlm_tensor dtable = vlm_tensor_cpu_f32(k->dtable, 2, st), dpos = vlm_tensor_cpu_f32(k->dpos, 2, sp);
  vlm_embedding_backward(&dtable, k->use_pos ? &dpos : NULL, &dout, &ids);
}

static void test_known(void) {
  for (int mode = 0; mode < 2; mode++)
    for (int is64 = 0; is64 < 2; is64++) {
      vlm_set_kernel_mode((vlm_kernel_mode)mode);
      /* V = 4, W = 2, B = 2, L = 2, pos has 3 rows (more than L). */
      float table[8] = {0, 1, 10, 11, 20, 21, 30, 31}, pos[6] = {100, 200, 300, 400, 500, 600}, out[8];
      int32_t i32[4] = {3, 0, 1, 3};
      int64_t i64[4] = {3, 0, 1, 3};
      int64_t si[2] = {2, 2}, st[2] = {4, 2}, sp[2] = {3, 2}, so[3] = {2, 2, 2};
      vlm_tensor ids = is64 ? vlm_tensor_make(i64, VLM_I64, VLM_CPU, 2, si) : vlm_tensor_make(i32, VLM_I32, VLM_CPU, 2, si);
      vlm_tensor tt = vlm_tensor_cpu_f32(table, 2, st), tp = vlm_tensor_cpu_f32(pos, 2, sp);
      vlm_tensor to = vlm_tensor_cpu_f32(out, 3, so);
      vlm_embedding_forward(&to, &ids, &tt, &tp);
      float want[8] = {130, 231, 300, 401, 110, 211, 330, 431};
      CHECK(!memcmp(out, want, sizeof want), "%s %s: forward with pos", mode_name(mode), is64 ? "I64" : "I32");
      vlm_embedding_forward(&to, &ids, &tt, NULL);
      float want0[8] = {30, 31, 0, 1, 10, 11, 30, 31};
      CHECK(!memcmp(out, want0, sizeof want0), "%s %s: forward without pos", mode_name(mode), is64 ? "I64" : "I32");
      float dout[8] = {1, 2, 3, 4, 5, 6, 7, 8}, dtable[8] = {0}, dpos[6] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
      vlm_tensor tdo = vlm_tensor_cpu_f32(dout, 3, so), tdt = vlm_tensor_cpu_f32(dtable, 2, st);
      vlm_tensor tdp = vlm_tensor_cpu_f32(dpos, 2, sp);
      vlm_embedding_backward(&tdt, &tdp, &tdo, &ids);
      float wt[8] = {3, 4, 5, 6, 0, 0, 8, 10}, wp[6] = {6.5f, 8.5f, 10.5f, 12.5f, 0.5f, 0.5f};
      CHECK(!memcmp(dtable, wt, sizeof wt) && !memcmp(dpos, wp, sizeof wp), "%s %s: backward", mode_name(mode),
            is64 ? "I64" : "I32");
      vlm_embedding_backward(NULL, &tdp, &tdo, &ids);
      CHECK(dpos[0] == 12.5f && dtable[0] == 3, "%s: NULL dtable", mode_name(mode));
      vlm_embedding_backward(&tdt, NULL, &tdo, &ids);
      CHECK(dpos[0] == 12.5f && dtable[0] == 6, "%s: NULL dpos", mode_name(mode));
    }
}

static void test_gradcheck(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    emb_case k;
    emb_alloc(&k, 3, 5, 11, 6, 7, 1, mode, 200);
    vt_gc_input in[2] = {{"table", k.table, k.dtable, k.V * k.W}, {"pos", k.pos, k.dpos, k.P * k.W}};
    vt_gradcheck g = {emb_forward, emb_backward, &k, k.out, k.dout, k.B * k.L * k.W, in, 2, 0, 0, 0, 8};
    char what[64];
    snprintf(what, sizeof what, "embedding %s", mode_name(mode));
    vt_gradcheck_run(what, &g);
    emb_free(&k);
  }
}

static void test_fast_vs_ref(int64_t B, int64_t L, int64_t V, int64_t W, int64_t P, int use_pos, int is64) {
  emb_case a, b;
  emb_alloc(&a, B, L, V, W, P, use_pos, is64, 300 + W);
  emb_alloc(&b, B, L, V, W, P, use_pos, is64, 300 + W);
  vt_fill_normal(a.dtable, V * W, 301, 1.0f);
  vt_fill_normal(a.dpos, P * W, 302, 1.0f);
  memcpy(b.dtable, a.dtable, sizeof(float) * (size_t)(V * W));
  memcpy(b.dpos, a.dpos, sizeof(float) * (size_t)(P * W));
  vlm_set_kernel_mode(VLM_KERNELS_REF);
  emb_forward(&a);
  emb_backward(&a);
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  emb_forward(&b);
  emb_backward(&b);
  double e_o = vt_max_rel(b.out, a.out, B * L * W, 1e-6), e_t = vt_max_rel(b.dtable, a.dtable, V * W, 1e-6);
  double e_p = vt_max_rel(b.dpos, a.dpos, P * W, 1e-6);
  CHECK(e_o < 1e-5 && e_t < 1e-5 && e_p < 1e-5,
        "embedding fast vs ref B %lld L %lld V %lld W %lld pos %d %s: out %.2g dtable %.2g dpos %.2g", (long long)B,
        (long long)L, (long long)V, (long long)W, use_pos, is64 ? "I64" : "I32", e_o, e_t, e_p);
  if (getenv("VT_VERBOSE"))
    printf("  embedding fast vs ref B %lld L %lld V %lld W %lld pos %d %s: out %.2g dtable %.2g dpos %.2g\n",
           (long long)B, (long long)L, (long long)V, (long long)W, use_pos, is64 ? "I64" : "I32", e_o, e_t, e_p);
  emb_free(&a);
  emb_free(&b);
}

static void test_accumulate_and_threads(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    emb_case k;
    emb_alloc(&k, 16, 77, 500, 256, 80, 1, 1, 400);
    emb_backward(&k);
    float *t0 = vt_alloc(k.V * k.W), *p0 = vt_alloc(k.P * k.W);
    memcpy(t0, k.dtable, sizeof(float) * (size_t)(k.V * k.W));
    memcpy(p0, k.dpos, sizeof(float) * (size_t)(k.P * k.W));
    /* Same bits with one thread and with several (column ownership, fixed token order). */
    int nt = vlm_threads_get();
    vlm_threads_init(1);
    memset(k.dtable, 0, sizeof(float) * (size_t)(k.V * k.W));
    memset(k.dpos, 0, sizeof(float) * (size_t)(k.P * k.W));
    emb_backward(&k);
    vlm_threads_init(nt > 1 ? nt : 3);
    CHECK(!memcmp(t0, k.dtable, sizeof(float) * (size_t)(k.V * k.W)) &&
              !memcmp(p0, k.dpos, sizeof(float) * (size_t)(k.P * k.W)),
          "embedding %s: backward has the same bits on 1 thread and on %d", mode_name(mode), nt > 1 ? nt : 3);
    emb_backward(&k); /* on top of the first pass: about twice it (float rounding aside) */
    float *want_t = vt_alloc(k.V * k.W);
    for (int64_t i = 0; i < k.V * k.W; i++) want_t[i] = 2.0f * t0[i];
    CHECK(vt_max_rel(k.dtable, want_t, k.V * k.W, 1e-6) < 1e-6, "embedding %s: backward accumulates",
          mode_name(mode));
    vlm_threads_init(nt);
    free(t0); free(p0); free(want_t);
    emb_free(&k);
  }
}

typedef struct { int is64; int64_t bad; } bad_ctx;

static void bad_forward(void *ctx) {
  bad_ctx *c = ctx;
  float table[6] = {0}, out[4];
  int32_t i32[2] = {1, (int32_t)c->bad};
  int64_t i64[2] = {1, c->bad};
  int64_t si[2] = {1, 2}, st[2] = {3, 2}, so[3] = {1, 2, 2};
  vlm_tensor ids = c->is64 ? vlm_tensor_make(i64, VLM_I64, VLM_CPU, 2, si) : vlm_tensor_make(i32, VLM_I32, VLM_CPU, 2, si);
  vlm_tensor tt = vlm_tensor_cpu_f32(table, 2, st), to = vlm_tensor_cpu_f32(out, 3, so);
  vlm_embedding_forward(&to, &ids, &tt, NULL);
}

static void bad_backward(void *ctx) {
  bad_ctx *c = ctx;
  float dtable[6] = {0}, dout[4] = {0};
  int64_t i64[2] = {c->bad, 0};
  int64_t si[2] = {1, 2}, st[2] = {3, 2}, so[3] = {1, 2, 2};
  vlm_tensor ids = vlm_tensor_make(i64, VLM_I64, VLM_CPU, 2, si);
  vlm_tensor tt = vlm_tensor_cpu_f32(dtable, 2, st), to = vlm_tensor_cpu_f32(dout, 3, so);
  vlm_embedding_backward(&tt, NULL, &to, &ids);
}

static void test_bad_ids(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode((vlm_kernel_mode)mode);
    char what[64];
    bad_ctx c = {0, 3};
    snprintf(what, sizeof what, "embedding %s: id 3 of 3 (I32)", mode_name(mode));
    vt_expect_abort(what, bad_forward, &c, "id 3 ", "size 3");
    c.is64 = 1;
    c.bad = -1;
    snprintf(what, sizeof what, "embedding %s: id -1 (I64)", mode_name(mode));
    vt_expect_abort(what, bad_forward, &c, "id -1 ", "size 3");
    c.bad = 1000000000000LL;
    snprintf(what, sizeof what, "embedding %s: backward id 1e12", mode_name(mode));
    vt_expect_abort(what, bad_backward, &c, "id 1000000000000 ", "size 3");
  }
}

int main(void) {
  test_known();
  test_gradcheck();
  test_fast_vs_ref(1, 1, 1, 1, 1, 1, 0);
  test_fast_vs_ref(2, 3, 5, 33, 3, 1, 1);
  test_fast_vs_ref(2, 3, 5, 33, 9, 0, 0);
  test_fast_vs_ref(8, 77, 1000, 512, 77, 1, 0);
  test_fast_vs_ref(8, 77, 1000, 512, 80, 0, 1);
  test_fast_vs_ref(50, 8, 49408, 17, 10, 1, 1);
  test_fast_vs_ref(4, 197, 300, 768, 197, 1, 1);
  test_accumulate_and_threads();
  test_bad_ids();
  return vt_finish();
}
