/* SigLIP's sigmoid loss (contrastive/siglip_loss.c): the loss against a direct
 * double-precision computation here (l2 normalisation, exp(logit_scale) * img @ txt^T +
 * logit_bias, labels +1 / -1, -sum log sigmoid / B), and all four gradients (image and
 * text features, logit_scale, logit_bias) against central differences of that
 * computation, for one process (B = N) and one rank's rows of a larger batch, in both
 * kernel modes; the ranks' local losses at dloss = 1/world summed against open_clip's
 * definition (each rank's images against every text); the same on the (emulated) GPU
 * when there is one. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "contrastive/contrastive.h"
#include "gradcheck.h"

/* The loss of rows [off, off+B) of img against every row of txt, in double. */
static double direct_loss(const double *img, const double *txt, int64_t B, int64_t N, int64_t off, int64_t E,
                          double raw_scale, double bias) {
  double *a = malloc(sizeof(double) * (size_t)(N * E)), *b = malloc(sizeof(double) * (size_t)(N * E));
  for (int k = 0; k < 2; k++) {
    const double *x = k ? txt : img;
    double *y = k ? b : a;
    for (int64_t i = 0; i < N; i++) {
      double s = 0;
      for (int64_t e = 0; e < E; e++) s += x[i * E + e] * x[i * E + e];
      s = 1.0 / fmax(sqrt(s), 1e-12);
      for (int64_t e = 0; e < E; e++) y[i * E + e] = x[i * E + e] * s;
    }
  }
  double total = 0, sc = exp(raw_scale);
  for (int64_t i = 0; i < B; i++)
    for (int64_t j = 0; j < N; j++) {
      double d = 0;
      for (int64_t e = 0; e < E; e++) d += a[(off + i) * E + e] * b[j * E + e];
      double z = (j == off + i ? 1.0 : -1.0) * (sc * d + bias);
      total += log1p(exp(-z));   /* -log sigmoid(z) */
    }
  free(a);
  free(b);
  return total / (double)B;
}

typedef struct {
  int64_t B, N, off, E;
  double *img, *txt, scale, bias;
} prob;

static double prob_loss(const prob *p) { return direct_loss(p->img, p->txt, p->B, p->N, p->off, p->E, p->scale, p->bias); }

/* Central difference of the direct loss in x (a value of p). */
static double numgrad(prob *p, double *x) {
  const double h = 1e-6, x0 = *x;
  *x = x0 + h;
  double lp = prob_loss(p);
  *x = x0 - h;
  double lm = prob_loss(p);
  *x = x0;
  return (lp - lm) / (2 * h);
}

typedef struct {
  vlm_arena arena;
  vlm_siglip_loss_acts s;
} loss_run;

static void run_init(loss_run *r, int64_t B, int64_t N, int64_t off, int64_t E, vlm_device dev) {
  vlm_arena m;
  vlm_arena_measure(&m, dev);
  vlm_siglip_loss_layout_local(&r->s, &m, B, N, off, E);
  VLM_CHECK(vlm_arena_init(&r->arena, m.used, dev) == VLM_OK, "%s", vlm_last_error());
  vlm_siglip_loss_layout_local(&r->s, &r->arena, B, N, off, E);
}

/* vlm's loss and gradients (dloss) on dev; grads accumulate into the host arrays. */
static float run_vlm(const prob *p, vlm_device dev, float dloss, float *di, float *dt, float *ds, float *db) {
  const int64_t N = p->N, E = p->E;
  float *img = vt_alloc(N * E), *txt = vt_alloc(N * E), sc = (float)p->scale, bi = (float)p->bias;
  for (int64_t i = 0; i < N * E; i++) {
    img[i] = (float)p->img[i];
    txt[i] = (float)p->txt[i];
  }
  loss_run r;
  run_init(&r, p->B, N, p->off, E, dev);
  vlm_arena io;
  vlm_arena m;
  vlm_tensor t[8];
  for (int pass = 0; pass < 2; pass++) {   /* inputs and gradients on dev */
    vlm_arena *a = pass ? &io : &m;
    if (!pass) vlm_arena_measure(&m, dev);
    for (int k = 0; k < 4; k++) t[k] = k < 2 ? vlm_arena_tensor2(a, VLM_F32, N, E) : vlm_arena_tensor(a, VLM_F32, 0, NULL);
    for (int k = 4; k < 8; k++) t[k] = k < 6 ? vlm_arena_tensor2(a, VLM_F32, N, E) : vlm_arena_tensor(a, VLM_F32, 0, NULL);
    if (!pass) VLM_CHECK(vlm_arena_init(&io, m.used, dev) == VLM_OK, "%s", vlm_last_error());
  }
  float *host[8] = {img, txt, &sc, &bi, di, dt, ds, db};
  for (int k = 0; k < 8; k++) {
    vlm_tensor h = vlm_tensor_cpu_f32(host[k], t[k].ndim, t[k].shape);
    vlm_copy(&t[k], &h);
  }
  vlm_siglip_loss_forward(&r.s, &t[0], &t[1], &t[2], &t[3]);
  float loss = vlm_get_f32(&r.s.loss, 0);
  vlm_siglip_loss_backward(&r.s, dloss, &t[0], &t[1], &t[4], &t[5], &t[6], &t[7]);
  for (int k = 4; k < 8; k++) {
    vlm_tensor h = vlm_tensor_cpu_f32(host[k], t[k].ndim, t[k].shape);
    vlm_copy(&h, &t[k]);
  }
  vlm_arena_free(&io);
  vlm_arena_free(&r.arena);
  free(img);
  free(txt);
  return loss;
}

static void prob_init(prob *p, int64_t B, int64_t N, int64_t off, int64_t E, uint64_t seed, double scale,
                      double bias) {
  p->B = B; p->N = N; p->off = off; p->E = E; p->scale = scale; p->bias = bias;
  p->img = malloc(sizeof(double) * (size_t)(N * E));
  p->txt = malloc(sizeof(double) * (size_t)(N * E));
  float *f = vt_alloc(2 * N * E);
  vt_fill_normal(f, 2 * N * E, seed, 1.0f);
  /* float-representable values: vlm sees exactly what the direct computation does */
  for (int64_t i = 0; i < N * E; i++) {
    p->img[i] = f[i];
    p->txt[i] = f[N * E + i];
  }
  /* pull matching pairs together a little, as a trained model has them */
  for (int64_t i = 0; i < N * E; i++) p->txt[i] = (double)(float)(p->txt[i] * 0.5 + p->img[i]);
  free(f);
}

static void prob_free(prob *p) { free(p->img); free(p->txt); }

static void check_case(const char *what, prob *p, vlm_device dev) {
  const int64_t N = p->N, E = p->E;
  float *di = vt_alloc(N * E), *dt = vt_alloc(N * E), ds = 0, db = 0;
  const float dloss = 0.75f;
  float loss = run_vlm(p, dev, dloss, di, dt, &ds, &db);
  double want = prob_loss(p);
  CHECK(fabs(loss - want) <= 2e-6 * fmax(1, fabs(want)), "%s: loss %.8g, direct %.8g", what, loss, want);
  double gmax = 0, err = 0;
  for (int k = 0; k < 2; k++) {
    double *x = k ? p->txt : p->img;
    float *g = k ? dt : di;
    for (int64_t i = 0; i < N * E; i++) {
      double n = dloss * numgrad(p, &x[i]);
      gmax = fmax(gmax, fabs(n));
      err = fmax(err, fabs(g[i] - n));
    }
  }
  CHECK(err <= 1e-4 * fmax(gmax, 1e-3), "%s: feature gradients off by %.3g (max %.3g)", what, err, gmax);
  double ns = dloss * numgrad(p, &p->scale), nb = dloss * numgrad(p, &p->bias);
  CHECK(fabs(ds - ns) <= 1e-4 * fmax(fabs(ns), 1e-2), "%s: d logit_scale %.8g, numeric %.8g", what, ds, ns);
  CHECK(fabs(db - nb) <= 1e-4 * fmax(fabs(nb), 1e-2), "%s: d logit_bias %.8g, numeric %.8g", what, db, nb);
  if (getenv("VT_VERBOSE"))
    printf("  %s: loss %.7f (direct %.7f), features %.2g of %.2g, scale %.6g/%.6g, bias %.6g/%.6g\n", what, loss,
           want, err, gmax, ds, ns, db, nb);
  free(di);
  free(dt);
}

static void test_gradients(vlm_device dev) {
  /* one process; one rank's rows [3, 6) of a 9-row global batch; the open_clip
   * initial values (ln 10, -10) and a trained-like pair (a larger scale, a smaller bias) */
  const int64_t cases[][3] = {{5, 5, 0}, {3, 9, 3}, {1, 4, 3}};
  const double sb[][2] = {{2.302585092994046, -10.0}, {3.5, -2.0}};
  for (int mode = 0; mode < (dev == VLM_CPU ? 2 : 1); mode++) {
    vlm_set_kernel_mode(mode ? VLM_KERNELS_REF : VLM_KERNELS_FAST);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
      for (int v = 0; v < 2; v++) {
        prob p;
        prob_init(&p, cases[c][0], cases[c][1], cases[c][2], 6, 30 + c, sb[v][0], sb[v][1]);
        char what[160];
        snprintf(what, sizeof what, "siglip loss %s%s, rows [%lld, %lld) of %lld, scale %.3g bias %.3g",
                 dev == VLM_CUDA ? "on the GPU" : mode ? "(ref)" : "(fast)", "", (long long)p.off,
                 (long long)(p.off + p.B), (long long)p.N, exp(p.scale), p.bias);
        check_case(what, &p, dev);
        prob_free(&p);
      }
  }
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
}

/* Three ranks of 2 images: each rank's loss is its images against all 6 texts (open_clip's
 * SigLipLoss with the neighbour exchange); the sum of the ranks' gradients at dloss 1/3 is
 * the gradient of the mean of their losses, which the direct computation gives. */
static void test_ranks(void) {
  enum { R = 3, Bl = 2, N = R * Bl, E = 5 };
  prob whole;
  prob_init(&whole, N, N, 0, E, 77, 2.0, -3.0);
  float di[N * E] = {0}, dt[N * E] = {0}, ds = 0, db = 0;
  double mean = 0, want_mean = 0;
  for (int r = 0; r < R; r++) {
    prob p = whole;
    p.B = Bl;
    p.off = r * Bl;
    mean += run_vlm(&p, VLM_CPU, 1.0f / R, di, dt, &ds, &db) / R;
    want_mean += prob_loss(&p) / R;
  }
  CHECK(fabs(mean - want_mean) < 2e-6, "3 ranks: mean loss %.8g, direct %.8g", mean, want_mean);
  /* the gradient of the mean of the ranks' direct losses */
  double err = 0, gmax = 0;
  for (int k = 0; k < 2; k++)
    for (int64_t i = 0; i < N * E; i++) {
      double *x = k ? &whole.txt[i] : &whole.img[i], x0 = *x, h = 1e-6, lp = 0, lm = 0;
      for (int s = 0; s < 2; s++) {
        *x = x0 + (s ? -h : h);
        for (int r = 0; r < R; r++) {
          prob p = whole;
          p.B = Bl;
          p.off = r * Bl;
          *(s ? &lm : &lp) += prob_loss(&p) / R;
        }
      }
      *x = x0;
      double n = (lp - lm) / (2 * h);
      gmax = fmax(gmax, fabs(n));
      err = fmax(err, fabs((k ? dt : di)[i] - n));
    }
  CHECK(err <= 1e-4 * gmax, "3 ranks: summed feature gradients off by %.3g (max %.3g)", err, gmax);
  prob_free(&whole);
}

int main(void) {
  test_gradients(VLM_CPU);
  test_ranks();
  if (vlm_cuda_available()) test_gradients(VLM_CUDA);
  else printf("no GPU: the device case runs in the GPU (or emulated GPU) build\n");
  return vt_finish();
}
