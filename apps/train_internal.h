/* apps-internal pieces of `vlm train`: logging (train_log.c) and evaluation
 * (train_eval.c). */
#ifndef VLM_APPS_TRAIN_INTERNAL_H
#define VLM_APPS_TRAIN_INTERNAL_H
#include <stdio.h>

#include "core/core.h"
#include "datasets/datasets.h"
#include "model/model.h"

/* ---- logging (train_log.c) ---- */
typedef struct {
  int64_t step;
  double loss;
} vlm_log_point;

typedef struct {
  int64_t step;
  double val_loss, zs_top1, zs_unseen_top1, t2i_r1, i2t_r1;  /* NAN when not measured */
} vlm_log_eval;

typedef struct {
  int metrics_fd;         /* RUN/metrics.jsonl, appended (one JSON object per line); -1: none */
  char metrics_path[4096];
  int64_t metrics_lost;   /* lines that could not be written (a full disk): reported once, then counted */
  char png_path[4096];    /* RUN/loss.png */
  int tty;                /* progress bar on stderr */
  double last_draw;       /* vlm_now() of the last progress output */
  double interval;        /* seconds between plain progress lines */
  vlm_log_point *points;
  int64_t n_points, cap_points;
  vlm_log_eval *evals;
  int64_t n_evals, cap_evals;
  int coca;               /* the chart's loss legend: a CoCa run's train loss is contrastive + caption */
} vlm_train_log;

/* Opens RUN/metrics.jsonl for appending; earlier lines (a resumed run) are read back for the
 * chart. keep_until: a resumed run's step; an existing file's later lines are dropped. */
vlm_status vlm_train_log_open(vlm_train_log *L, const char *run_dir, int64_t keep_until);
void vlm_train_log_close(vlm_train_log *L);

typedef struct {
  int64_t step, total_steps, epoch;
  double loss, lr, logit_scale, samples_per_s, data_wait_frac, eta_s, grad_norm;
} vlm_progress;
/* Progress on stderr: a redrawn bar on a terminal (at most 5 per second), else
 * one plain line per interval; force = 1 prints now. */
void vlm_train_log_progress(vlm_train_log *L, const vlm_progress *p, int force);
/* One metrics.jsonl line for a training step (remembered for the chart). A line is written
 * whole or not at all: one that cannot be (ENOSPC) is cut back out, the first such failure is
 * reported on stderr naming the file, and metrics_lost counts them (training goes on). */
void vlm_train_log_step(vlm_train_log *L, const vlm_progress *p);
/* One metrics.jsonl line with evaluation results (json_fields: `"key": value, ...`). */
void vlm_train_log_eval(vlm_train_log *L, const vlm_log_eval *e, int64_t epoch, const char *json_fields);
/* Redraw RUN/loss.png (atomically): the loss curve on top, the evaluation curves below. */
vlm_status vlm_train_log_chart(vlm_train_log *L);
/* Write a line plot to path (atomic); the legends name only the series with values, and
 * coca labels the losses as a CoCa run's. Exposed for tests. */
vlm_status vlm_plot_png(const char *path, const vlm_log_point *pts, int64_t n, const vlm_log_eval *ev, int64_t ne,
                        int coca);
/* The chart's size and layout: each panel has a title row in the VLM_CHART_TITLE_H pixels
 * above its top edge, the title at the left and the panel's legend right-aligned. */
#define VLM_CHART_W 720
#define VLM_CHART_H 540
#define VLM_CHART_TOP_Y0 32   /* top edge of the loss panel */
#define VLM_CHART_BOT_Y0 294  /* top edge of the evaluation panel */
#define VLM_CHART_TITLE_H 26

/* ---- the chart's bitmap font (chart_font.c): printable ASCII, 5x7 glyphs ---- */
#define VLM_FONT_ADVANCE 6  /* cell width (glyph 5 + 1 spacing), times scale */
#define VLM_FONT_CAP 7      /* capital / digit height, times scale; y is the top of it */
#define VLM_FONT_HEIGHT 9   /* with descenders, times scale */
/* Width in pixels of text drawn at scale (no trailing spacing); 0 for "". */
int vlm_font_width(const char *text, int scale);
/* Draw text into an RGB buffer of w x h pixels (row-major, 3 bytes a pixel) with its
 * top-left corner at (x, y); pixels outside the buffer are skipped. Returns the width. */
int vlm_font_draw(uint8_t *rgb, int w, int h, int x, int y, const char *text, const uint8_t color[3], int scale);

/* ---- evaluation (train_eval.c) ---- */
typedef struct {
  int have_loss, have_retrieval, have_zeroshot;
  double val_loss;
  int64_t n;                      /* samples evaluated */
  vlm_retrieval_metrics ret;      /* one image per loader group; with caption_match identical captions are one item */
  vlm_retrieval_metrics ret_class;/* shapes: a hit = the same colour-shape class (label) */
  int have_class_retrieval;
  vlm_zeroshot_result zs;         /* subset = unseen colour-shape combinations (shapes) */
} vlm_eval_result;

typedef struct {
  const vlm_clip_config *model;
  const vlm_coca_config *coca;    /* non-NULL: evaluate the CoCa model coca_params (p is then unused) */
  vlm_coca_params *coca_params;
  int batch_size;
  int caption_match;              /* the shapes rule: identical captions count as the same item */
  int shapes;                     /* labels are shapes classes: unseen subset, class retrieval */
  vlm_tokenizer *tokenizer;       /* zero-shot prompts */
  int context_length;
  const char *const *templates;   /* "{}" is the class name, "{a}" its article (a/an) */
  int n_templates;
} vlm_eval_cfg;

/* Run the model over a whole loader epoch (eval order): val loss, retrieval, and
 * zero-shot when the loader has class names, on the device the parameters live on
 * (a GPU: each batch uploaded, the features copied back). CoCa models (ec->coca) are evaluated
 * through their image / text features (attentional pooler output 0, the cls token);
 * the val loss is the contrastive ClipLoss in both cases. */
vlm_status vlm_train_evaluate(const vlm_eval_cfg *ec, vlm_clip_params *p, vlm_loader *val, int do_retrieval,
                              int do_zeroshot, vlm_eval_result *out);
/* The JSON fields of a result ("val_loss": x, ...) into buf. */
void vlm_eval_result_json(const vlm_eval_result *r, char *buf, size_t n);
#endif
