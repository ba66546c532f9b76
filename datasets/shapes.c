/* The built-in synthetic "shapes" set (see datasets.h): images of one or two coloured
 * geometric shapes on neutral backgrounds, with captions that name them.
 *
 * Drawing: each shape is a signed distance function (a circle, or a polygon: square,
 * triangle, star, hexagon, cross; upright, though the code can rotate them); a pixel's coverage is
 * clamp(0.5 - d, 0, 1) with d the signed distance of the pixel centre in pixels, the
 * analytic equivalent of box-filter supersampling along an edge (anti-aliased, and
 * ~20x cheaper than 4x4 supersampling). Only the shape's bounding box is visited.
 * One train image in ten has two shapes: with 40% the demo's ViT needed about twice as many
 * steps before it told the kinds of shape apart (measured; see docs/PERFORMANCE.md).
 * Backgrounds are neutral (per-channel tint within +-12 of a gray level), solid, a linear
 * gradient or noise, so a background is never one of the saturated shape colours.
 *
 * Train captions name colour and kind always; size ("small"/"medium"/"large") and position
 * ("on the left", ...; "to the left of", "above" for pairs) each appear with probability
 * 0.3, after one of six framing prefixes ("", "a photo of ", ...), so the contrastive task
 * is about colour and kind first. The kind comes first ("a star in red") in 60% of the
 * captions, else the colour ("a red star"): a captioner that always saw the colour first
 * never named a held-out pair (after "red" it had only ever seen the five other kinds),
 * while after "a star in" the colour, which the image shows unambiguously, decides.
 * Held-out (val) captions are the class description only, "a red circle", so captions of
 * the same class are equal. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/source_internal.h"

#define PI 3.14159265358979323846

static const char *const k_colors[VLM_SHAPES_COLORS] = {"red", "green", "blue", "yellow",
                                                       "purple", "orange", "pink", "cyan"};
static const uint8_t k_rgb[VLM_SHAPES_COLORS][3] = {{220, 30, 30},  {30, 160, 50},  {30, 70, 230},  {245, 215, 20},
                                                   {140, 50, 190}, {250, 130, 10}, {245, 105, 180}, {20, 200, 220}};
static const char *const k_kinds[VLM_SHAPES_KINDS] = {"circle", "square", "triangle", "star", "hexagon", "cross"};
enum { K_CIRCLE, K_SQUARE, K_TRIANGLE, K_STAR, K_HEXAGON, K_CROSS };
/* Held out of training: one per colour and per kind (6 of 48 = 12.5%). */
static const int k_unseen[][2] = {{0, K_STAR}, {1, K_HEXAGON}, {2, K_TRIANGLE},
                                  {3, K_CROSS}, {4, K_CIRCLE}, {5, K_SQUARE}};
#define N_UNSEEN (int)(sizeof k_unseen / sizeof k_unseen[0])

static char g_names[VLM_SHAPES_CLASSES][32];
static const char *g_name_ptrs[VLM_SHAPES_CLASSES];
static pthread_once_t g_names_once = PTHREAD_ONCE_INIT;

static void names_build(void) {
  for (int c = 0; c < VLM_SHAPES_CLASSES; c++) {
    snprintf(g_names[c], sizeof g_names[c], "%s %s", k_colors[c / VLM_SHAPES_KINDS], k_kinds[c % VLM_SHAPES_KINDS]);
    g_name_ptrs[c] = g_names[c];
  }
}
static void names_init(void) { pthread_once(&g_names_once, names_build); }

const char *vlm_shapes_color_name(int color) { return color >= 0 && color < VLM_SHAPES_COLORS ? k_colors[color] : NULL; }
const char *vlm_shapes_kind_name(int kind) { return kind >= 0 && kind < VLM_SHAPES_KINDS ? k_kinds[kind] : NULL; }
const char *vlm_shapes_class_name(int cls) {
  if (cls < 0 || cls >= VLM_SHAPES_CLASSES) return NULL;
  names_init();
  return g_names[cls];
}
const char *const *vlm_shapes_classnames(void) {
  names_init();
  return g_name_ptrs;
}
int vlm_shapes_class_unseen(int cls) {
  for (int i = 0; i < N_UNSEEN; i++)
    if (cls == k_unseen[i][0] * VLM_SHAPES_KINDS + k_unseen[i][1]) return 1;
  return 0;
}

/* ------------------------------------------------------------------ drawing */
typedef struct {
  int kind, color;
  double cx, cy, r, rot;   /* pixels, radians */
  int size_word;           /* 0 small, 1 medium, 2 large */
} shape;

/* Polygon vertices of a shape in local units (radius 1, y down), rotated. Returns the count. */
static int shape_poly(const shape *s, double *vx, double *vy) {
  int n = 0;
  double px[12], py[12];
  switch (s->kind) {
    case K_SQUARE: {
      double a = 0.8;
      px[0] = -a; py[0] = -a; px[1] = a; py[1] = -a; px[2] = a; py[2] = a; px[3] = -a; py[3] = a;
      n = 4;
      break;
    }
    case K_TRIANGLE:
      for (int i = 0; i < 3; i++) {
        double t = -PI / 2 + i * 2 * PI / 3;
        px[i] = cos(t);
        py[i] = sin(t) + 0.15;
      }
      n = 3;
      break;
    case K_STAR:
      for (int i = 0; i < 10; i++) {
        double t = -PI / 2 + i * PI / 5, rr = (i & 1) ? 0.45 : 1.0;
        px[i] = rr * cos(t);
        py[i] = rr * sin(t) + 0.05;
      }
      n = 10;
      break;
    case K_HEXAGON:
      for (int i = 0; i < 6; i++) {
        double t = i * PI / 3;
        px[i] = 0.92 * cos(t);
        py[i] = 0.92 * sin(t);
      }
      n = 6;
      break;
    case K_CROSS: {
      double w = 0.32, e = 0.92;
      double cx[12] = {-w, w, w, e, e, w, w, -w, -w, -e, -e, -w};
      double cy[12] = {-e, -e, -w, -w, w, w, e, e, w, w, -w, -w};
      memcpy(px, cx, sizeof cx);
      memcpy(py, cy, sizeof cy);
      n = 12;
      break;
    }
    default: return 0;
  }
  double c = cos(s->rot), sn = sin(s->rot);
  for (int i = 0; i < n; i++) {
    vx[i] = s->cx + s->r * (c * px[i] - sn * py[i]);
    vy[i] = s->cy + s->r * (sn * px[i] + c * py[i]);
  }
  return n;
}

/* Signed distance (negative inside) from (x, y) to a polygon (even-odd inside test). */
static double poly_sdf(const double *vx, const double *vy, int n, double x, double y) {
  double d2 = 1e30;
  int inside = 0;
  for (int i = 0, j = n - 1; i < n; j = i++) {
    double ex = vx[i] - vx[j], ey = vy[i] - vy[j], wx = x - vx[j], wy = y - vy[j];
    double t = (wx * ex + wy * ey) / (ex * ex + ey * ey);
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double dx = wx - ex * t, dy = wy - ey * t, dd = dx * dx + dy * dy;
    if (dd < d2) d2 = dd;
    if ((vy[j] > y) != (vy[i] > y) && x < vx[j] + (y - vy[j]) * ex / ey) inside = !inside;
  }
  double d = sqrt(d2);
  return inside ? -d : d;
}

static void draw_shape(vlm_image *img, const shape *s) {
  int S = img->w;
  double vx[12], vy[12];
  int n = s->kind == K_CIRCLE ? 0 : shape_poly(s, vx, vy);
  double R = s->r * 1.3 + 2;
  int x0 = (int)floor(s->cx - R), x1 = (int)ceil(s->cx + R), y0 = (int)floor(s->cy - R), y1 = (int)ceil(s->cy + R);
  if (x0 < 0) x0 = 0;
  if (y0 < 0) y0 = 0;
  if (x1 > S) x1 = S;
  if (y1 > img->h) y1 = img->h;
  const uint8_t *col = k_rgb[s->color];
  /* Only pixels near the edge need the distance: the shape lies in the disk of radius `out`
   * around its centre and covers the one of radius `in` (centre to the nearest edge), so a
   * pixel centre more than 0.5 px outside the first is untouched (a <= 0) and one more than
   * 0.5 px inside the second gets the colour (a clamped to 1: p + (col - p) * 1 = col). A
   * margin of 1.5 px (out2, in2 below) keeps both tests exact; the images are those of the per-pixel loop. */
  double out = s->r * 0.9, in = s->r * 0.9;
  if (n > 0) {
    out = 0;
    for (int i = 0; i < n; i++) {
      double h = hypot(vx[i] - s->cx, vy[i] - s->cy);
      if (h > out) out = h;
    }
    double dc = poly_sdf(vx, vy, n, s->cx, s->cy);
    in = dc < 0 ? -dc : 0;
  }
  const double out2 = (out + 1.5) * (out + 1.5), in2 = in > 1.5 ? (in - 1.5) * (in - 1.5) : -1.0;
  for (int y = y0; y < y1; y++) {
    uint8_t *row = img->data + (size_t)y * S * 3;
    const double py = y + 0.5, dy = py - s->cy;
    if (dy * dy > out2) continue;
    const double half = sqrt(out2 - dy * dy);
    int xa = (int)floor(s->cx - half) - 1, xb = (int)ceil(s->cx + half) + 1;
    if (xa < x0) xa = x0;
    if (xb > x1) xb = x1;
    for (int x = xa; x < xb; x++) {
      double px = x + 0.5, d;
      const double dx = px - s->cx, r2 = dx * dx + dy * dy;
      if (r2 > out2) continue;
      uint8_t *p = row + x * 3;
      if (r2 < in2) {
        for (int c = 0; c < 3; c++) p[c] = col[c];
        continue;
      }
      if (n == 0) d = hypot(px - s->cx, py - s->cy) - s->r * 0.9;
      else d = poly_sdf(vx, vy, n, px, py);
      double a = 0.5 - d;
      if (a <= 0) continue;
      if (a > 1) a = 1;
      for (int c = 0; c < 3; c++) p[c] = (uint8_t)lrint(p[c] + (col[c] - p[c]) * a);
    }
  }
}

static int clampi(int v) { return v < 0 ? 0 : v > 255 ? 255 : v; }

static void neutral(vlm_rng *r, int out[3]) {
  int g = 25 + (int)vlm_rng_below(r, 206);
  for (int c = 0; c < 3; c++) out[c] = clampi(g + (int)vlm_rng_below(r, 25) - 12);
}

static void draw_background(vlm_image *img, vlm_rng *r) {
  int S = img->w, H = img->h;
  int kind = (int)vlm_rng_below(r, 3);
  int a[3], b[3];
  neutral(r, a);
  if (kind == 0) {
    for (size_t i = 0; i < (size_t)S * H; i++)
      for (int c = 0; c < 3; c++) img->data[i * 3 + c] = (uint8_t)a[c];
  } else if (kind == 1) {
    neutral(r, b);
    int dir = (int)vlm_rng_below(r, 4);   /* horizontal, vertical, two diagonals */
    for (int y = 0; y < H; y++)
      for (int x = 0; x < S; x++) {
        double t = dir == 0 ? (x + 0.5) / S : dir == 1 ? (y + 0.5) / H : dir == 2 ? (x + y + 1.0) / (S + H)
                                                                                     : (S - x + y) / (double)(S + H);
        for (int c = 0; c < 3; c++) img->data[((size_t)y * S + x) * 3 + c] = (uint8_t)lrint(a[c] + (b[c] - a[c]) * t);
      }
  } else {
    int amp = 8 + (int)vlm_rng_below(r, 14);
    for (size_t i = 0; i < (size_t)S * H; i++) {
      uint64_t u = vlm_rng_u64(r);
      int g = (int)(u % (uint64_t)(2 * amp + 1)) - amp;
      for (int c = 0; c < 3; c++) img->data[i * 3 + c] = (uint8_t)clampi(a[c] + g + (int)((u >> (16 + 8 * c)) & 7) - 3);
    }
  }
}

/* ------------------------------------------------------------------ captions */
static const double k_radius[3] = {0.13, 0.19, 0.26};   /* fraction of the side */
static const char *const k_size_words[3] = {"small", "medium", "large"};
static const char *const k_pos_words[5] = {"on the left", "on the right", "at the top", "at the bottom", "in the center"};
static const char *const k_prefix[6] = {"", "a photo of ", "an image of ", "a picture of ", "a drawing of ", "there is "};

/* "a large red circle" / "an orange star" (colour first), or "a large circle in red" /
 * "a star in orange" (kind first), into buf. */
static void noun_phrase(char *buf, size_t n, const shape *s, int with_size, int kind_first) {
  char body[64], sz[16] = "";
  if (with_size) snprintf(sz, sizeof sz, "%s ", k_size_words[s->size_word]);
  if (kind_first) snprintf(body, sizeof body, "%s%s in %s", sz, k_kinds[s->kind], k_colors[s->color]);
  else snprintf(body, sizeof body, "%s%s %s", sz, k_colors[s->color], k_kinds[s->kind]);
  int vowel = strchr("aeiou", body[0]) != NULL;
  snprintf(buf, n, "%s %s", vowel ? "an" : "a", body);
}

static double unif(vlm_rng *r, double lo, double hi) { return lo + (hi - lo) * vlm_rng_uniform(r); }

static int draw_class(vlm_rng *r, vlm_shapes_split split) {
  for (;;) {
    int c = (int)vlm_rng_below(r, VLM_SHAPES_CLASSES);
    if (split == VLM_SHAPES_VAL || !vlm_shapes_class_unseen(c)) return c;
  }
}

vlm_status vlm_shapes_generate(vlm_shapes_split split, uint64_t seed, int64_t index, int size, vlm_image *rgb,
                               char **caption, int *label) {
  memset(rgb, 0, sizeof *rgb);
  *caption = NULL;
  *label = -1;
  if (size < 8 || size > 4096) return vlm_error(VLM_ERR_ARG, "shapes: image size %d out of range [8, 4096]", size);
  vlm_rng r;
  vlm_rng_seed_stream(&r, seed * 0x9E3779B97F4A7C15ull + (split == VLM_SHAPES_VAL ? 0x5641ull : 0x5452ull), (uint64_t)index);
  vlm_status st = vlm_image_alloc(rgb, size, size, VLM_IMG_RGB, 0);
  if (st) return st;
  draw_background(rgb, &r);
  double S = size;
  int two = split == VLM_SHAPES_TRAIN && vlm_rng_uniform(&r) < 0.1;   /* see the header comment */
  shape sh[2];
  int ns = two ? 2 : 1;
  int horiz = 0, pos = 0;
  for (int i = 0; i < ns; i++) {
    int cls;
    do cls = draw_class(&r, split);
    while (i == 1 && cls == sh[0].color * VLM_SHAPES_KINDS + sh[0].kind);
    sh[i].color = cls / VLM_SHAPES_KINDS;
    sh[i].kind = cls % VLM_SHAPES_KINDS;
    sh[i].size_word = (int)vlm_rng_below(&r, two ? 2 : 3);
    sh[i].r = S * k_radius[sh[i].size_word] * unif(&r, 0.92, 1.08);
    sh[i].rot = 0;   /* upright: rotating by up to +-17 degrees slowed learning (measured) */
  }
  if (!two) {
    pos = (int)vlm_rng_below(&r, 5);
    double rr = sh[0].r, lo = rr + 1, far = 0.36 * S;
    if (far < lo) far = lo;
    double a = unif(&r, lo, far), b = unif(&r, 0.35 * S, 0.65 * S), c = unif(&r, 0.44 * S, 0.56 * S);
    switch (pos) {
      case 0: sh[0].cx = a; sh[0].cy = b; break;
      case 1: sh[0].cx = S - a; sh[0].cy = b; break;
      case 2: sh[0].cx = b; sh[0].cy = a; break;
      case 3: sh[0].cx = b; sh[0].cy = S - a; break;
      default: sh[0].cx = c; sh[0].cy = unif(&r, 0.44 * S, 0.56 * S); break;
    }
    *label = sh[0].color * VLM_SHAPES_KINDS + sh[0].kind;
  } else {
    horiz = vlm_rng_uniform(&r) < 0.5;
    for (int i = 0; i < 2; i++) {
      double rr = sh[i].r;
      double along = unif(&r, rr + 1, 0.5 * S - rr - 1 > rr + 1 ? 0.5 * S - rr - 1 : rr + 1);
      double across = unif(&r, 0.32 * S, 0.68 * S);
      if (i == 1) along = S - along;
      if (horiz) { sh[i].cx = along; sh[i].cy = across; }
      else { sh[i].cx = across; sh[i].cy = along; }
    }
  }
  for (int i = 0; i < ns; i++) draw_shape(rgb, &sh[i]);

  /* caption */
  char cap[256], np0[80], np1[80];
  int with_size = vlm_rng_uniform(&r) < 0.3, with_pos = vlm_rng_uniform(&r) < 0.3;
  const char *pre = k_prefix[vlm_rng_below(&r, 6)];
  int kind_first = vlm_rng_uniform(&r) < 0.6;
  noun_phrase(np0, sizeof np0, &sh[0], with_size, kind_first);
  if (split == VLM_SHAPES_VAL) {
    /* The held-out split's caption is its class description ("a red circle"): the same
     * for every image of the class, so "the retrieved image's caption equals the query"
     * is a well-defined hit for text-to-image recall. */
    noun_phrase(cap, sizeof cap, &sh[0], 0, 0);
  } else if (!two) {
    if (with_pos) snprintf(cap, sizeof cap, "%s%s %s", pre, np0, k_pos_words[pos]);
    else snprintf(cap, sizeof cap, "%s%s", pre, np0);
  } else {
    noun_phrase(np1, sizeof np1, &sh[1], with_size, kind_first);
    int swap = vlm_rng_uniform(&r) < 0.5;
    const char *x = swap ? np1 : np0, *y = swap ? np0 : np1;
    if (with_pos) {
      /* sh[0] is left of / above sh[1] */
      const char *rel = horiz ? (swap ? "to the right of" : "to the left of") : (swap ? "below" : "above");
      snprintf(cap, sizeof cap, "%s%s %s %s", pre, x, rel, y);
    } else {
      snprintf(cap, sizeof cap, "%s%s and %s", pre, x, y);
    }
  }
  *caption = strdup(cap);
  if (!*caption) {
    vlm_image_free(rgb);
    return vlm_error(VLM_ERR_OOM, "shapes: out of memory");
  }
  return VLM_OK;
}

/* ------------------------------------------------------------------ the source */
typedef struct {
  vlm_shapes_split split;
  uint64_t seed;
  int size;
} shapes_src;

static void shapes_free(void *p) { free(p); }

static vlm_status shapes_get(vlm_source *s, int64_t i, vlm_sample *out) {
  shapes_src *g = s->impl;
  snprintf(out->name, sizeof out->name, "shapes:%s:%lld", g->split == VLM_SHAPES_VAL ? "val" : "train", (long long)i);
  vlm_status st = vlm_shapes_generate(g->split, g->seed, i, g->size, &out->pixels, &out->caption, &out->label);
  if (st) {
    vlm_error_prefix(st, "%s", out->name);
    return vlm_src_fail(out, VLM_BAD_READ, st);
  }
  out->group = i;
  return VLM_OK;
}

/* "shapes", "shapes:val", "shapes:train:N", "shapes:N", "shapes:val:N". */
vlm_status vlm_src_open_shapes(vlm_source *s, const char *spec) {
  shapes_src *g = calloc(1, sizeof *g);
  if (!g) return vlm_error(VLM_ERR_OOM, "out of memory");
  s->impl = g;
  s->free_impl = shapes_free;
  g->split = VLM_SHAPES_TRAIN;
  g->seed = s->opts.seed;
  g->size = s->opts.shapes_size > 0 ? s->opts.shapes_size : 64;
  if (g->size < 8 || g->size > 4096) return vlm_error(VLM_ERR_ARG, "%s: image size %d out of range [8, 4096]", spec, g->size);
  int64_t n = -1;
  const char *p = spec + 6;
  if (strncmp(spec, "shapes", 6)) return vlm_error(VLM_ERR_ARG, "%s: not a shapes spec", spec);
  while (*p == ':') {
    p++;
    if (!strncmp(p, "val", 3) && (p[3] == 0 || p[3] == ':')) { g->split = VLM_SHAPES_VAL; p += 3; continue; }
    if (!strncmp(p, "train", 5) && (p[5] == 0 || p[5] == ':')) { g->split = VLM_SHAPES_TRAIN; p += 5; continue; }
    char *end;
    long long v = strtoll(p, &end, 10);
    if (end == p || v <= 0 || v > ((long long)1 << 40) || (*end && *end != ':'))
      return vlm_error(VLM_ERR_ARG, "%s: expected shapes[:train|:val][:N] with N a positive count", spec);
    n = v;
    p = end;
  }
  if (*p) return vlm_error(VLM_ERR_ARG, "%s: expected shapes[:train|:val][:N]", spec);
  s->size = n > 0 ? n : g->split == VLM_SHAPES_VAL ? 1000 : VLM_SHAPES_TRAIN_DEFAULT;
  s->get = shapes_get;
  s->classnames = calloc(VLM_SHAPES_CLASSES, sizeof *s->classnames);
  if (!s->classnames) return vlm_error(VLM_ERR_OOM, "out of memory");
  s->n_classes = VLM_SHAPES_CLASSES;
  for (int c = 0; c < VLM_SHAPES_CLASSES; c++)
    if (!(s->classnames[c] = strdup(vlm_shapes_class_name(c)))) return vlm_error(VLM_ERR_OOM, "out of memory");
  return VLM_OK;
}
