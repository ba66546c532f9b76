/* `vlm train` logging: the progress bar / plain lines, metrics.jsonl, and the
 * loss.png chart (plain C rasterizer, libpng, written atomically). */
#define _POSIX_C_SOURCE 200809L
#include <cJSON.h>
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apps/train_internal.h"

static void add_point(vlm_train_log *L, int64_t step, double loss) {
  if (L->n_points == L->cap_points) {
    int64_t cap = L->cap_points ? 2 * L->cap_points : 1024;
    vlm_log_point *p = realloc(L->points, (size_t)cap * sizeof *p);
    if (!p) return;
    L->points = p;
    L->cap_points = cap;
  }
  L->points[L->n_points++] = (vlm_log_point){step, loss};
}

static void add_eval(vlm_train_log *L, const vlm_log_eval *e) {
  if (L->n_evals == L->cap_evals) {
    int64_t cap = L->cap_evals ? 2 * L->cap_evals : 64;
    vlm_log_eval *p = realloc(L->evals, (size_t)cap * sizeof *p);
    if (!p) return;
    L->evals = p;
    L->cap_evals = cap;
  }
  L->evals[L->n_evals++] = *e;
}

static double jnum(const cJSON *o, const char *k) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

vlm_status vlm_train_log_open(vlm_train_log *L, const char *run_dir) {
  memset(L, 0, sizeof *L);
  char path[4096];
  snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
  snprintf(L->png_path, sizeof L->png_path, "%s/loss.png", run_dir);
  FILE *f = fopen(path, "r");
  if (f) { /* a resumed run: earlier lines feed the chart */
    char line[8192];
    while (fgets(line, sizeof line, f)) {
      cJSON *o = cJSON_Parse(line);
      if (!o) continue;
      const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
      if (cJSON_IsString(t) && !strcmp(t->valuestring, "train")) {
        add_point(L, (int64_t)jnum(o, "step"), jnum(o, "loss"));
      } else if (cJSON_IsString(t) && !strcmp(t->valuestring, "eval")) {
        vlm_log_eval e = {(int64_t)jnum(o, "step"), jnum(o, "val_loss"), jnum(o, "zeroshot_top1"),
                          jnum(o, "zeroshot_unseen_top1"), jnum(o, "text_to_image_R@1"), jnum(o, "image_to_text_R@1")};
        add_eval(L, &e);
      }
      cJSON_Delete(o);
    }
    fclose(f);
  }
  L->metrics = fopen(path, "a");
  if (!L->metrics) return vlm_error(VLM_ERR_IO, "%s: cannot open for writing", path);
  L->tty = isatty(2);
  L->interval = 10.0;
  return VLM_OK;
}

void vlm_train_log_close(vlm_train_log *L) {
  if (L->metrics) fclose(L->metrics);
  free(L->points);
  free(L->evals);
  memset(L, 0, sizeof *L);
}

static void fmt_time(char *buf, size_t n, double s) {
  if (!(s >= 0) || s > 1e7) {
    snprintf(buf, n, "--:--");
    return;
  }
  long t = (long)(s + 0.5);
  if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

void vlm_train_log_progress(vlm_train_log *L, const vlm_progress *p, int force) {
  double now = vlm_now();
  if (!force && now - L->last_draw < (L->tty ? 0.2 : L->interval)) return;
  L->last_draw = now;
  char eta[32];
  fmt_time(eta, sizeof eta, p->eta_s);
  double frac = p->total_steps > 0 ? (double)p->step / (double)p->total_steps : 0;
  if (L->tty) {
    char bar[21];
    int k = (int)(frac * 20);
    for (int i = 0; i < 20; i++) bar[i] = i < k ? '#' : '.';
    bar[20] = 0;
    fprintf(stderr,
            "\r[%s] step %lld/%lld epoch %lld loss %.4f lr %.3g scale %.2f %.0f samples/s wait %.0f%% ETA %s \033[K",
            bar, (long long)p->step, (long long)p->total_steps, (long long)p->epoch, p->loss, p->lr, p->logit_scale,
            p->samples_per_s, 100 * p->data_wait_frac, eta);
    if (force) fputc('\n', stderr);
  } else {
    fprintf(stderr, "step %lld/%lld (%.0f%%) epoch %lld loss %.4f lr %.3g logit_scale %.2f %.0f samples/s data-wait %.0f%% ETA %s\n",
            (long long)p->step, (long long)p->total_steps, 100 * frac, (long long)p->epoch, p->loss, p->lr,
            p->logit_scale, p->samples_per_s, 100 * p->data_wait_frac, eta);
  }
  fflush(stderr);
}

void vlm_train_log_step(vlm_train_log *L, const vlm_progress *p) {
  add_point(L, p->step, p->loss);
  if (!L->metrics) return;
  fprintf(L->metrics,
          "{\"type\": \"train\", \"step\": %lld, \"epoch\": %lld, \"loss\": %.7g, \"lr\": %.7g, \"logit_scale\": %.7g, "
          "\"grad_norm\": %.7g, \"samples_per_s\": %.4g, \"data_wait_frac\": %.4g}\n",
          (long long)p->step, (long long)p->epoch, p->loss, p->lr, p->logit_scale, p->grad_norm, p->samples_per_s,
          p->data_wait_frac);
  fflush(L->metrics);
}

void vlm_train_log_eval(vlm_train_log *L, const vlm_log_eval *e, int64_t epoch, const char *json_fields) {
  add_eval(L, e);
  if (!L->metrics) return;
  fprintf(L->metrics, "{\"type\": \"eval\", \"step\": %lld, \"epoch\": %lld%s%s}\n", (long long)e->step,
          (long long)epoch, json_fields && *json_fields ? ", " : "", json_fields ? json_fields : "");
  fflush(L->metrics);
}

/* ------------------------------------------------------------------ the chart */
#define W 720
#define H 540
typedef struct { uint8_t px[H][W][3]; } canvas;

static void put(canvas *c, int x, int y, const uint8_t *rgb) {
  if (x < 0 || y < 0 || x >= W || y >= H) return;
  memcpy(c->px[y][x], rgb, 3);
}

static void line(canvas *c, int x0, int y0, int x1, int y1, const uint8_t *rgb, int thick) {
  int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy;
  for (;;) {
    for (int a = 0; a < thick; a++)
      for (int b = 0; b < thick; b++) put(c, x0 + a, y0 + b, rgb);
    if (x0 == x1 && y0 == y1) break;
    int e2 = 2 * err;
    if (e2 >= dy) { err += dy; x0 += sx; }
    if (e2 <= dx) { err += dx; y0 += sy; }
  }
}

static void box(canvas *c, int x0, int y0, int x1, int y1, const uint8_t *rgb) {
  for (int y = y0; y <= y1; y++)
    for (int x = x0; x <= x1; x++) put(c, x, y, rgb);
}

typedef struct { int x0, y0, x1, y1; } panel;

static void frame(canvas *c, panel p, int hlines) {
  static const uint8_t grid[3] = {225, 225, 225}, axis[3] = {90, 90, 90};
  for (int i = 1; i < hlines; i++) {
    int y = p.y1 - (p.y1 - p.y0) * i / hlines;
    line(c, p.x0, y, p.x1, y, grid, 1);
  }
  line(c, p.x0, p.y0, p.x0, p.y1, axis, 1);
  line(c, p.x0, p.y1, p.x1, p.y1, axis, 1);
}

static int px_x(panel p, double x, double xmax) { return p.x0 + (int)lround((p.x1 - p.x0) * (xmax > 0 ? x / xmax : 0)); }
static int px_y(panel p, double y, double ymax) {
  double f = ymax > 0 ? y / ymax : 0;
  if (f < 0) f = 0;
  if (f > 1) f = 1;
  return p.y1 - (int)lround((p.y1 - p.y0) * f);
}

vlm_status vlm_plot_png(const char *path, const vlm_log_point *pts, int64_t n, const vlm_log_eval *ev, int64_t ne) {
  canvas *c = malloc(sizeof *c);
  if (!c) return vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
  memset(c, 255, sizeof *c);
  panel top = {50, 20, W - 20, H / 2 - 20}, bot = {50, H / 2 + 20, W - 20, H - 30};
  double xmax = 1, ymax = 0;
  for (int64_t i = 0; i < n; i++) {
    if (pts[i].step > xmax) xmax = (double)pts[i].step;
    if (isfinite(pts[i].loss) && pts[i].loss > ymax) ymax = pts[i].loss;
  }
  for (int64_t i = 0; i < ne; i++) {
    if (ev[i].step > xmax) xmax = (double)ev[i].step;
    if (isfinite(ev[i].val_loss) && ev[i].val_loss > ymax) ymax = ev[i].val_loss;
  }
  if (ymax <= 0) ymax = 1;
  ymax = ceil(ymax);
  frame(c, top, (int)ymax <= 10 ? (int)ymax : 10);
  frame(c, bot, 4);
  static const uint8_t c_loss[3] = {31, 119, 180}, c_val[3] = {214, 39, 40}, c_zs[3] = {44, 160, 44},
                       c_t2i[3] = {148, 103, 189}, c_i2t[3] = {255, 127, 14}, c_un[3] = {140, 86, 75};
  for (int64_t i = 1; i < n; i++)
    if (isfinite(pts[i - 1].loss) && isfinite(pts[i].loss))
      line(c, px_x(top, (double)pts[i - 1].step, xmax), px_y(top, pts[i - 1].loss, ymax),
           px_x(top, (double)pts[i].step, xmax), px_y(top, pts[i].loss, ymax), c_loss, 1);
  /* evaluation curves: val loss on top (red), metrics in [0, 1] below */
  for (int k = 0; k < 5; k++) {
    const uint8_t *col = k == 0 ? c_val : k == 1 ? c_zs : k == 2 ? c_t2i : k == 3 ? c_i2t : c_un;
    panel p = k == 0 ? top : bot;
    double ym = k == 0 ? ymax : 1.0;
    int have_prev = 0, px = 0, py = 0;
    for (int64_t i = 0; i < ne; i++) {
      double v = k == 0 ? ev[i].val_loss : k == 1 ? ev[i].zs_top1 : k == 2 ? ev[i].t2i_r1 : k == 3 ? ev[i].i2t_r1
                                                                                            : ev[i].zs_unseen_top1;
      if (!isfinite(v)) continue;
      int x = px_x(p, (double)ev[i].step, xmax), y = px_y(p, v, ym);
      box(c, x - 2, y - 2, x + 2, y + 2, col);
      if (have_prev) line(c, px, py, x, y, col, 2);
      have_prev = 1;
      px = x;
      py = y;
    }
    box(c, W - 20 - 14 * (5 - k), H - 18, W - 20 - 14 * (5 - k) + 9, H - 9, col); /* legend swatch, in plot order */
  }
  vlm_atomic_file af;
  vlm_status s = vlm_atomic_open(&af, path);
  if (s != VLM_OK) {
    free(c);
    return s;
  }
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    vlm_atomic_abort(&af);
    free(c);
    return vlm_error(VLM_ERR_IO, "%s: PNG encoding failed", path);
  }
  png_init_io(png, af.f);
  png_set_IHDR(png, info, W, H, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < H; y++) png_write_row(png, (png_bytep)c->px[y]);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  free(c);
  return vlm_atomic_commit(&af);
}

vlm_status vlm_train_log_chart(vlm_train_log *L) {
  return vlm_plot_png(L->png_path, L->points, L->n_points, L->evals, L->n_evals);
}
