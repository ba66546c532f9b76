/* `vlm train` logging: the progress bar / plain lines, metrics.jsonl, and the
 * loss.png chart (plain C rasterizer, libpng, written atomically). */
#define _POSIX_C_SOURCE 200809L
#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <png.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* A resumed run repeats the steps after its checkpoint: the lines of metrics.jsonl
 * beyond keep_until (and a line cut short by a kill) are dropped, by writing the
 * kept ones to a temporary file renamed over the old one (which is left as it was
 * when nothing changes). */
static vlm_status keep_metrics_until(const char *path, int64_t keep_until, vlm_train_log *L) {
  FILE *f = fopen(path, "r");
  if (!f) return VLM_OK;
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *out = fopen(tmp, "w");
  if (!out) {
    fclose(f);
    return vlm_error(VLM_ERR_IO, "%s: cannot write", tmp);
  }
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int64_t dropped = 0;
  int mended = 0;
  while ((len = getline(&line, &cap, f)) > 0) {
    cJSON *o = cJSON_Parse(line);
    double step = o ? jnum(o, "step") : NAN;
    if (!o || (step == step && step > (double)keep_until)) {
      dropped++;
      cJSON_Delete(o);
      continue;
    }
    fputs(line, out);
    if (line[len - 1] != '\n') { /* a whole record whose newline a kill cut off */
      fputc('\n', out);
      mended = 1;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    if (cJSON_IsString(t) && !strcmp(t->valuestring, "train")) {
      add_point(L, (int64_t)step, jnum(o, "loss"));
    } else if (cJSON_IsString(t) && !strcmp(t->valuestring, "eval")) {
      vlm_log_eval e = {(int64_t)step, jnum(o, "val_loss"), jnum(o, "zeroshot_top1"), jnum(o, "zeroshot_unseen_top1"),
                        jnum(o, "text_to_image_R@1"), jnum(o, "image_to_text_R@1")};
      add_eval(L, &e);
    }
    cJSON_Delete(o);
  }
  free(line);
  fclose(f);
  int bad = ferror(out) | (fflush(out) != 0) | (fsync(fileno(out)) != 0);
  bad |= fclose(out) != 0;
  if (bad) {
    remove(tmp);
    return vlm_error(VLM_ERR_IO, "%s: write failed", tmp);
  }
  if (!dropped && !mended) return remove(tmp) == 0 ? VLM_OK : vlm_error(VLM_ERR_IO, "%s: cannot remove", tmp);
  if (rename(tmp, path) != 0) {
    remove(tmp);
    return vlm_error(VLM_ERR_IO, "%s: cannot replace", path);
  }
  if (dropped)
    fprintf(stderr, "%s: dropped %lld line(s) after step %lld (they are logged again)\n", path, (long long)dropped,
            (long long)keep_until);
  return VLM_OK;
}

vlm_status vlm_train_log_open(vlm_train_log *L, const char *run_dir, int64_t keep_until) {
  memset(L, 0, sizeof *L);
  L->metrics_fd = -1;
  char path[4096];
  snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
  snprintf(L->png_path, sizeof L->png_path, "%s/loss.png", run_dir);
  /* a resumed run: earlier lines feed the chart */
  vlm_status st = keep_metrics_until(path, keep_until, L);
  if (st != VLM_OK) return st;
  snprintf(L->metrics_path, sizeof L->metrics_path, "%s", path);
  L->metrics_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
  if (L->metrics_fd < 0) return vlm_error(VLM_ERR_IO, "%s: cannot open for writing: %s", path, strerror(errno));
  L->tty = isatty(2);
  L->interval = 10.0;
  return VLM_OK;
}

void vlm_train_log_close(vlm_train_log *L) {
  if (L->metrics_path[0] && L->metrics_fd >= 0) close(L->metrics_fd);   /* a zeroed log was never opened */
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

/* One line appended with write(2), whole or not at all: the file's size is noted first, and a
 * write that fails part-way (a full disk) is cut back to it, so metrics.jsonl never holds a
 * cut line that a later one would run into. The first failure is reported naming the file. */
static void metrics_line(vlm_train_log *L, int64_t step, const char *fmt, ...) {
  if (!L->metrics_path[0] || L->metrics_fd < 0) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *line = n >= 0 ? malloc((size_t)n + 1) : NULL;
  int e = line ? 0 : ENOMEM;
  if (line) {
    va_start(ap, fmt);
    vsnprintf(line, (size_t)n + 1, fmt, ap);
    va_end(ap);
    struct stat sb;
    off_t before = fstat(L->metrics_fd, &sb) == 0 ? sb.st_size : -1;
    size_t done = 0;
    while (done < (size_t)n) {
      ssize_t w = write(L->metrics_fd, line + done, (size_t)n - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        e = w < 0 ? errno : EIO;
        break;
      }
      done += (size_t)w;
    }
    if (e && done && before >= 0 && ftruncate(L->metrics_fd, before) != 0)
      fprintf(stderr, "vlm train: %s: cannot remove a cut line: %s\n", L->metrics_path, strerror(errno));
    free(line);
  }
  if (!e) return;
  if (L->metrics_lost++ == 0)
    fprintf(stderr, "vlm train: %s: cannot write the line of step %lld: %s (training goes on; lines that "
            "cannot be written are left out and counted)\n", L->metrics_path, (long long)step, strerror(e));
}

void vlm_train_log_step(vlm_train_log *L, const vlm_progress *p) {
  add_point(L, p->step, p->loss);
  metrics_line(L, p->step,
          "{\"type\": \"train\", \"step\": %lld, \"epoch\": %lld, \"loss\": %.7g, \"lr\": %.7g, \"logit_scale\": %.7g, "
          "\"grad_norm\": %.7g, \"samples_per_s\": %.4g, \"data_wait_frac\": %.4g}\n",
          (long long)p->step, (long long)p->epoch, p->loss, p->lr, p->logit_scale, p->grad_norm, p->samples_per_s,
          p->data_wait_frac);
}

void vlm_train_log_eval(vlm_train_log *L, const vlm_log_eval *e, int64_t epoch, const char *json_fields) {
  add_eval(L, e);
  metrics_line(L, e->step, "{\"type\": \"eval\", \"step\": %lld, \"epoch\": %lld%s%s}\n", (long long)e->step,
               (long long)epoch, json_fields && *json_fields ? ", " : "", json_fields ? json_fields : "");
}

/* ------------------------------------------------------------------ the chart */
/* Layout (pixels): a title row above each panel, its legend right-aligned in that
 * row; y tick labels left of each panel, step labels under each panel, "step"
 * centred at the bottom. Text is chart_font.c's 5x7 font. */
#define W VLM_CHART_W
#define H VLM_CHART_H
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

static int text(canvas *c, int x, int y, const char *s, const uint8_t *rgb, int scale) {
  return vlm_font_draw(&c->px[0][0][0], W, H, x, y, s, rgb, scale);
}

static const uint8_t c_text[3] = {40, 40, 40}, c_tick[3] = {85, 85, 85}, c_grid[3] = {228, 228, 228},
                     c_axis[3] = {90, 90, 90};

typedef struct { int x0, y0, x1, y1; } panel;

/* The smallest step of 1, 2 or 5 times a power of ten that divides [0, max] into at most max_div parts. */
static double nice_step(double max, int max_div) {
  double p = pow(10, floor(log10(max / max_div)));
  for (;; p *= 10) {
    static const double m[3] = {1, 2, 5};
    for (int i = 0; i < 3; i++)
      if (ceil(max / (m[i] * p) - 1e-9) <= max_div) return m[i] * p;
  }
}

/* Step numbers, compactly: 300, 1500, 9k, 12.5k, 2M. */
static void fmt_step(char *buf, size_t n, double v) {
  long long s = llround(v);
  if (s >= 1000000 && s % 1000000 == 0) snprintf(buf, n, "%lldM", s / 1000000);
  else if (s >= 1000 && s % 1000 == 0) snprintf(buf, n, "%lldk", s / 1000);
  else if (s < 10000) snprintf(buf, n, "%lld", s);
  else if (s < 1000000) snprintf(buf, n, "%.4gk", (double)s / 1000);
  else snprintf(buf, n, "%.4gM", (double)s / 1000000);
}

/* Horizontal grid lines with their values (i * ystep, right-aligned left of the axis),
 * vertical grid lines at the step ticks with their labels below, and the axes. */
static void frame(canvas *c, panel p, int hlines, double ystep, double xmax, double xstep) {
  for (double t = xstep; t <= xmax * (1 + 1e-9); t += xstep) {
    int x = p.x0 + (int)lround((p.x1 - p.x0) * t / xmax);
    line(c, x, p.y0, x, p.y1, c_grid, 1);
  }
  for (int i = 0; i <= hlines; i++) {
    int y = p.y1 - (p.y1 - p.y0) * i / hlines;
    if (i > 0) line(c, p.x0, y, p.x1, y, c_grid, 1);
    line(c, p.x0 - 4, y, p.x0, y, c_axis, 1);
    char lab[32];
    snprintf(lab, sizeof lab, "%g", i * ystep);
    text(c, p.x0 - 7 - vlm_font_width(lab, 1), y - VLM_FONT_CAP / 2, lab, c_tick, 1);
  }
  for (double t = 0; t <= xmax * (1 + 1e-9); t += xstep) {
    int x = p.x0 + (int)lround((p.x1 - p.x0) * t / xmax);
    line(c, x, p.y1, x, p.y1 + 4, c_axis, 1);
    char lab[32];
    fmt_step(lab, sizeof lab, t);
    int w = vlm_font_width(lab, 1), lx = x - w / 2;
    if (lx + w > W - 2) lx = W - 2 - w;
    text(c, lx, p.y1 + 7, lab, c_tick, 1);
  }
  line(c, p.x0, p.y0, p.x0, p.y1, c_axis, 1);
  line(c, p.x0, p.y1, p.x1, p.y1, c_axis, 1);
}

typedef struct {
  const char *name;
  const uint8_t *rgb;
  int marker; /* evaluation series: 2-pixel line with 5x5 markers */
} series;

/* The panel's title at the left of its title row and its legend right-aligned in it. */
static void title_row(canvas *c, panel p, const char *title, const series *s, int ns) {
  int y = p.y0 - VLM_CHART_TITLE_H;
  text(c, p.x0, y, title, c_text, 2);
  int swatch = 18, gap = 5, sep = 16, total = 0;
  for (int i = 0; i < ns; i++) total += (i ? sep : 0) + swatch + gap + vlm_font_width(s[i].name, 1);
  int x = p.x1 - total, ty = y + (2 * VLM_FONT_CAP - VLM_FONT_CAP) / 2, my = ty + VLM_FONT_CAP / 2;
  for (int i = 0; i < ns; i++) {
    if (i) x += sep;
    line(c, x, my - (s[i].marker ? 1 : 0), x + swatch - 1, my - (s[i].marker ? 1 : 0), s[i].rgb, s[i].marker ? 2 : 1);
    if (s[i].marker) box(c, x + swatch / 2 - 2, my - 2, x + swatch / 2 + 2, my + 2, s[i].rgb);
    x += swatch + gap;
    x += text(c, x, ty, s[i].name, c_text, 1);
  }
}

static int px_x(panel p, double x, double xmax) { return p.x0 + (int)lround((p.x1 - p.x0) * (xmax > 0 ? x / xmax : 0)); }
static int px_y(panel p, double y, double ymax) {
  double f = ymax > 0 ? y / ymax : 0;
  if (f < 0) f = 0;
  if (f > 1) f = 1;
  return p.y1 - (int)lround((p.y1 - p.y0) * f);
}

vlm_status vlm_plot_png(const char *path, const vlm_log_point *pts, int64_t n, const vlm_log_eval *ev, int64_t ne,
                        int coca) {
  canvas *c = malloc(sizeof *c);
  if (!c) return vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
  memset(c, 255, sizeof *c);
  /* tick labels 7 px under each panel, "step" under the bottom one */
  panel top = {52, VLM_CHART_TOP_Y0, W - 24, VLM_CHART_BOT_Y0 - 50}, bot = {52, VLM_CHART_BOT_Y0, W - 24, H - 40};
  double xmax = 1, ymax = 0;
  for (int64_t i = 0; i < n; i++) {
    if (pts[i].step > xmax) xmax = (double)pts[i].step;
    if (isfinite(pts[i].loss) && pts[i].loss > ymax) ymax = pts[i].loss;
  }
  for (int64_t i = 0; i < ne; i++) {
    if (ev[i].step > xmax) xmax = (double)ev[i].step;
    if (isfinite(ev[i].val_loss) && ev[i].val_loss > ymax) ymax = ev[i].val_loss;
  }
  if (!(ymax > 1e-9) || ymax > 1e30) ymax = 1;
  double ystep = nice_step(ymax, 8), xstep = nice_step(xmax, 5);
  if (xstep < 1) xstep = 1;
  int hlines = (int)ceil(ymax / ystep - 1e-9);
  ymax = hlines * ystep;
  frame(c, top, hlines, ystep, xmax, xstep);
  frame(c, bot, 4, 0.25, xmax, xstep);
  text(c, (top.x0 + top.x1 - vlm_font_width("step", 1)) / 2, bot.y1 + 20, "step", c_text, 1);
  static const uint8_t c_loss[3] = {31, 119, 180}, c_val[3] = {214, 39, 40}, c_zs[3] = {44, 160, 44},
                       c_t2i[3] = {148, 103, 189}, c_i2t[3] = {255, 127, 14}, c_un[3] = {140, 86, 75};
  /* A CoCa run's train loss is the weighted sum of both losses; its val loss, as
   * open_clip's clip_val_loss, is the contrastive part only: the legend says so. */
  const series all_top[2] = {{coca ? "train loss (contrastive + caption)" : "train loss", c_loss, 0},
                             {coca ? "val loss (contrastive)" : "val loss", c_val, 1}},
               all_bot[4] = {{"zero-shot top-1", c_zs, 1}, {"text->image R@1", c_t2i, 1},
                             {"image->text R@1", c_i2t, 1}, {"unseen top-1", c_un, 1}};
  /* the legends name only the series that have a value */
  int have[6] = {0};
  for (int64_t i = 0; i < n; i++) have[0] |= isfinite(pts[i].loss);
  for (int64_t i = 0; i < ne; i++) {
    have[1] |= isfinite(ev[i].val_loss);
    have[2] |= isfinite(ev[i].zs_top1);
    have[3] |= isfinite(ev[i].t2i_r1);
    have[4] |= isfinite(ev[i].i2t_r1);
    have[5] |= isfinite(ev[i].zs_unseen_top1);
  }
  series s_top[2], s_bot[4];
  int n_top = 0, n_bot = 0;
  for (int k = 0; k < 2; k++)
    if (have[k]) s_top[n_top++] = all_top[k];
  for (int k = 0; k < 4; k++)
    if (have[2 + k]) s_bot[n_bot++] = all_bot[k];
  title_row(c, top, "loss", s_top, n_top);
  title_row(c, bot, "evaluation", s_bot, n_bot);
  if (!n_bot) {
    const char *none = "no evaluation in this run (--val-data, --zeroshot-data)";
    static const uint8_t white[3] = {255, 255, 255};
    const int w = vlm_font_width(none, 1), x = (bot.x0 + bot.x1 - w) / 2, y = (bot.y0 + bot.y1 - VLM_FONT_CAP) / 2;
    box(c, x - 6, y - 5, x + w + 5, y + VLM_FONT_HEIGHT + 4, white);   /* clear of the grid lines */
    text(c, x, y, none, c_tick, 1);
  }
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
  return vlm_plot_png(L->png_path, L->points, L->n_points, L->evals, L->n_evals, L->coca);
}
