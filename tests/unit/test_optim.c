/* AdamW, gradient clipping and LR schedules against the formulas of
 * ../shared/fixtures/README.md (open_clip's optimizer), computed here in double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

#define NP 3
static const int64_t sizes[NP] = {7, 1, 300000};

static void test_adamw(void) {
  vlm_adamw_config c = {0.9f, 0.98f, 1e-6f, 0.2f};
  float *p[NP], *g[NP], *m[NP], *v[NP], *pf[NP], *mf[NP], *vf[NP];
  double *pd[NP], *md[NP], *vd[NP];
  vlm_tensor tp[NP], tg[NP], tm[NP], tv[NP], tpf[NP], tmf[NP], tvf[NP];
  vlm_param_slot ref[NP], fast[NP];
  for (int s = 0; s < NP; s++) {
    int64_t n = sizes[s];
    p[s] = vt_alloc(n); g[s] = vt_alloc(n); m[s] = vt_alloc(n); v[s] = vt_alloc(n);
    pf[s] = vt_alloc(n); mf[s] = vt_alloc(n); vf[s] = vt_alloc(n);
    pd[s] = calloc((size_t)n, sizeof(double)); md[s] = calloc((size_t)n, sizeof(double));
    vd[s] = calloc((size_t)n, sizeof(double));
    vt_fill_normal(p[s], n, 10 + s, 1.0f);
    memcpy(pf[s], p[s], sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) pd[s][i] = p[s][i];
    tp[s] = vlm_tensor_cpu_f32(p[s], 1, &sizes[s]); tg[s] = vlm_tensor_cpu_f32(g[s], 1, &sizes[s]);
    tm[s] = vlm_tensor_cpu_f32(m[s], 1, &sizes[s]); tv[s] = vlm_tensor_cpu_f32(v[s], 1, &sizes[s]);
    tpf[s] = vlm_tensor_cpu_f32(pf[s], 1, &sizes[s]); tmf[s] = vlm_tensor_cpu_f32(mf[s], 1, &sizes[s]);
    tvf[s] = vlm_tensor_cpu_f32(vf[s], 1, &sizes[s]);
    int decay = s != 1;
    ref[s] = (vlm_param_slot){"p", &tp[s], &tg[s], &tm[s], &tv[s], decay};
    fast[s] = (vlm_param_slot){"p", &tpf[s], &tg[s], &tmf[s], &tvf[s], decay};
  }
  for (int t = 1; t <= 6; t++) {
    float lr = vlm_lr_cosine(1e-3f, 2, 6, t - 1);
    for (int s = 0; s < NP; s++) vt_fill_normal(g[s], sizes[s], 100 * t + s, 0.1f);
    vlm_set_kernel_mode(VLM_KERNELS_REF);
    vlm_adamw_step(ref, NP, &c, lr, t);
    vlm_set_kernel_mode(VLM_KERNELS_FAST);
    vlm_adamw_step(fast, NP, &c, lr, t);
    /* The same step in double, from the fixture README's formulas. */
    for (int s = 0; s < NP; s++) {
      double wd = s != 1 ? 0.2 : 0.0;
      for (int64_t i = 0; i < sizes[s]; i++) {
        double gi = g[s][i];
        pd[s][i] *= 1.0 - lr * wd;
        md[s][i] = 0.9 * md[s][i] + 0.1 * gi;
        vd[s][i] = 0.98 * vd[s][i] + 0.02 * gi * gi;
        pd[s][i] -= (lr / (1 - pow(0.9, t))) * md[s][i] / (sqrt(vd[s][i]) / sqrt(1 - pow(0.98, t)) + 1e-6);
      }
    }
  }
  for (int s = 0; s < NP; s++) {
    int64_t n = sizes[s];
    CHECK(memcmp(p[s], pf[s], sizeof(float) * (size_t)n) == 0 && memcmp(m[s], mf[s], sizeof(float) * (size_t)n) == 0 &&
              memcmp(v[s], vf[s], sizeof(float) * (size_t)n) == 0,
          "adamw fast path is bit-identical to the reference (slot %d)", s);
    double pe = 0, me = 0, ve = 0, pmax = 0, mmax = 0, vmax = 0;
    for (int64_t i = 0; i < n; i++) {
      pe = fmax(pe, fabs(p[s][i] - pd[s][i])); pmax = fmax(pmax, fabs(pd[s][i]));
      me = fmax(me, fabs(m[s][i] - md[s][i])); mmax = fmax(mmax, fabs(md[s][i]));
      ve = fmax(ve, fabs(v[s][i] - vd[s][i])); vmax = fmax(vmax, fabs(vd[s][i]));
    }
    /* The fixture's tolerances for a float32 optimizer. */
    CHECK(pe <= 1e-5 + 1e-4 * pmax, "adamw weights vs double: %g", pe);
    CHECK(me <= 1e-4 * mmax && ve <= 1e-4 * vmax, "adamw moments vs double: %g %g", me / mmax, ve / vmax);
    free(p[s]); free(g[s]); free(m[s]); free(v[s]); free(pf[s]); free(mf[s]); free(vf[s]);
    free(pd[s]); free(md[s]); free(vd[s]);
  }
  /* Decay only where asked: zero gradient, one step: p *= 1 - lr*wd exactly for decay slots. */
  float a = 2.0f, ga = 0, ma = 0, va = 0, b = 2.0f, gb = 0, mb = 0, vb = 0;
  int64_t one = 1;
  vlm_tensor ta = vlm_tensor_cpu_f32(&a, 1, &one), tga = vlm_tensor_cpu_f32(&ga, 1, &one),
             tma = vlm_tensor_cpu_f32(&ma, 1, &one), tva = vlm_tensor_cpu_f32(&va, 1, &one),
             tb = vlm_tensor_cpu_f32(&b, 1, &one), tgb = vlm_tensor_cpu_f32(&gb, 1, &one),
             tmb = vlm_tensor_cpu_f32(&mb, 1, &one), tvb = vlm_tensor_cpu_f32(&vb, 1, &one);
  vlm_param_slot sl[2] = {{"a", &ta, &tga, &tma, &tva, 1}, {"b", &tb, &tgb, &tmb, &tvb, 0}};
  vlm_adamw_step(sl, 2, &c, 0.5f, 1);
  CHECK(fabsf(a - 2.0f * (1 - 0.5f * 0.2f)) < 1e-6f && b == 2.0f, "decoupled decay: a=%g b=%g", a, b);
}

static void test_clip(void) {
  float g1[3] = {3, 0, 0}, g2[1] = {4};
  int64_t n3 = 3, n1 = 1;
  vlm_tensor t1 = vlm_tensor_cpu_f32(g1, 1, &n3), t2 = vlm_tensor_cpu_f32(g2, 1, &n1);
  vlm_param_slot s[2] = {{"a", &t1, &t1, &t1, &t1, 0}, {"b", &t2, &t2, &t2, &t2, 0}};
  CHECK(fabs(vlm_grad_norm(s, 2) - 5.0) < 1e-12, "global norm");
  double coef;
  double norm = vlm_grad_clip(s, 2, 1.0, &coef);
  CHECK(fabs(norm - 5.0) < 1e-12 && fabs(coef - 1.0 / (5.0 + 1e-6)) < 1e-12, "clip coef %g", coef);
  CHECK(fabsf(g1[0] - 3.0f / 5.0f) < 1e-6f && fabsf(g2[0] - 4.0f / 5.0f) < 1e-6f, "clipped values");
  norm = vlm_grad_clip(s, 2, 10.0, &coef);
  CHECK(coef == 1.0 && fabsf(g2[0] - 0.8f) < 1e-6f, "no clip below the bound");
  vlm_grad_clip(s, 2, 0.0, &coef);
  CHECK(coef == 1.0, "max_norm 0 disables clipping");
}

static void test_schedules(void) {
  /* The fixture's schedule: base 1e-3, warmup 2, 6 steps. */
  const double want[6] = {5e-4, 1e-3, 1e-3, 8.535534e-4, 5e-4, 1.464466e-4};
  for (int s = 0; s < 6; s++)
    CHECK(fabs(vlm_lr_cosine(1e-3f, 2, 6, s) - want[s]) <= 1e-6 * want[s] + 1e-12, "cosine step %d: %g", s,
          vlm_lr_cosine(1e-3f, 2, 6, s));
  CHECK(vlm_lr_const(1e-3f, 4, 1) == 5e-4f && vlm_lr_const(1e-3f, 4, 100) == 1e-3f, "const");
  CHECK(vlm_lr_const_cooldown(1e-3f, 2, 10, 5, 4, 1.0f, 0.0f) == 1e-3f, "const before cooldown");
  CHECK(fabsf(vlm_lr_const_cooldown(1e-3f, 2, 10, 8, 4, 1.0f, 0.0f) - 5e-4f) < 1e-9f, "cooldown halfway");
  CHECK(fabsf(vlm_lr_const_cooldown(1e-3f, 2, 10, 8, 4, 2.0f, 1e-4f) - (0.25f * 9e-4f + 1e-4f)) < 1e-9f,
        "cooldown power and end lr");
}

int main(void) {
  test_adamw();
  test_clip();
  test_schedules();
  return vt_finish();
}
