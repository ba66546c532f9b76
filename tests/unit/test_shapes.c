/* The synthetic shapes set: determinism, class list and held-out split (unseen colour-shape
 * combinations never in train captions or labels, present in val), captions naming the
 * shape's colour and kind with size/position only part of the time, neutral backgrounds,
 * the shape's colour in the image, spec parsing, generation speed (printed). */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datasets/datasets.h"
#include "gradcheck.h"

/* FNV-1a hashes of the pixels of the pinned images (see "pixels pinned" below) */
#define PIN_32_TRAIN 0xc11fc2c05942de59ull
#define PIN_32_VAL 0x349f230c946c4ac9ull
#define PIN_64_TRAIN 0x52dc1ef627836bd8ull
#define PIN_13_TRAIN 0x96ccedec6b98ff30ull
#define PIN_224_VAL 0x782227a1d4a62914ull

static int contains_words(const char *cap, const char *name) {
  size_t n = strlen(name);
  for (const char *p = cap; (p = strstr(p, name)); p++) {
    /* whole words: "red circle" must not match inside another word */
    int left_ok = p == cap || p[-1] == ' ';
    int right_ok = p[n] == 0 || p[n] == ' ' || p[n] == '.';
    if (left_ok && right_ok) return 1;
  }
  return 0;
}

/* The caption names class cls, colour first ("red circle") or kind first ("circle in red"). */
static int contains_class(const char *cap, int cls) {
  char kf[64];
  snprintf(kf, sizeof kf, "%s in %s", vlm_shapes_kind_name(cls % VLM_SHAPES_KINDS),
           vlm_shapes_color_name(cls / VLM_SHAPES_KINDS));
  return contains_words(cap, vlm_shapes_class_name(cls)) || contains_words(cap, kf);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  /* class list */
  int unseen = 0;
  for (int c = 0; c < VLM_SHAPES_CLASSES; c++) unseen += vlm_shapes_class_unseen(c);
  CHECK(unseen >= 4 && unseen <= 8, "unseen classes: %d (10-15%% of 48 expected)", unseen);
  CHECK(!strcmp(vlm_shapes_class_name(0), "red circle"), "class 0 = %s", vlm_shapes_class_name(0));
  CHECK(vlm_shapes_class_name(VLM_SHAPES_CLASSES) == NULL && vlm_shapes_class_name(-1) == NULL, "out-of-range names");
  const char *const *names = vlm_shapes_classnames();
  for (int a = 0; a < VLM_SHAPES_CLASSES; a++)
    for (int b = a + 1; b < VLM_SHAPES_CLASSES; b++) CHECK(strcmp(names[a], names[b]) != 0, "classes %d %d equal", a, b);

  /* determinism */
  vlm_image a, b;
  char *ca, *cb;
  int la, lb;
  CHECK(vlm_shapes_generate(VLM_SHAPES_TRAIN, 7, 123, 64, &a, &ca, &la) == VLM_OK, "generate");
  CHECK(vlm_shapes_generate(VLM_SHAPES_TRAIN, 7, 123, 64, &b, &cb, &lb) == VLM_OK, "generate again");
  CHECK(a.w == 64 && a.h == 64 && a.mode == VLM_IMG_RGB, "64x64 RGB");
  CHECK(!memcmp(a.data, b.data, 64 * 64 * 3) && !strcmp(ca, cb) && la == lb, "same (seed, index) -> same sample");
  vlm_image_free(&b);
  free(cb);
  CHECK(vlm_shapes_generate(VLM_SHAPES_TRAIN, 8, 123, 64, &b, &cb, &lb) == VLM_OK, "generate other seed");
  CHECK(memcmp(a.data, b.data, 64 * 64 * 3) != 0, "another seed -> another image");
  vlm_image_free(&a);
  vlm_image_free(&b);
  free(ca);
  free(cb);
  CHECK(vlm_shapes_generate(VLM_SHAPES_TRAIN, 7, 0, 4, &a, &ca, &la) != VLM_OK, "size 4 refused");

  /* train: no unseen combination, alone or in pairs; captions name colour + kind */
  int n_train = 3000, bad_unseen = 0, with_size = 0, with_pos = 0, two = 0, named = 0, label_unseen = 0;
  int kind_first = 0;
  int seen_cls[VLM_SHAPES_CLASSES] = {0};
  for (int i = 0; i < n_train; i++) {
    vlm_image im;
    char *cap;
    int lab;
    if (vlm_shapes_generate(VLM_SHAPES_TRAIN, 1, i, 64, &im, &cap, &lab)) { CHECK(0, "train %d: %s", i, vlm_last_error()); break; }
    int k = 0;
    for (int c = 0; c < VLM_SHAPES_CLASSES; c++)
      if (contains_class(cap, c)) {
        k++;
        seen_cls[c]++;
        if (vlm_shapes_class_unseen(c)) bad_unseen++;
      }
    if (lab >= 0 && vlm_shapes_class_unseen(lab)) label_unseen++;
    if (lab >= 0 && contains_class(cap, lab)) named++;
    if (lab < 0) two++;
    if (strstr(cap, "small") || strstr(cap, "medium") || strstr(cap, "large")) with_size++;
    for (int c = 0; c < VLM_SHAPES_COLORS; c++) {
      char kf[32];
      snprintf(kf, sizeof kf, " in %s", vlm_shapes_color_name(c));
      if (contains_words(cap, kf + 1)) { kind_first++; break; }
    }
    if (strstr(cap, "left") || strstr(cap, "right") || strstr(cap, "top") || strstr(cap, "bottom") ||
        strstr(cap, "center") || strstr(cap, "above") || strstr(cap, "below"))
      with_pos++;
    CHECK(k == (lab >= 0 ? 1 : 2) || k == 1, "train %d: caption '%s' names %d classes", i, cap, k);
    if (i < 6) printf("  train %d: %s (label %d)\n", i, cap, lab);
    vlm_image_free(&im);
    free(cap);
  }
  CHECK(bad_unseen == 0, "unseen combinations in %d train captions", bad_unseen);
  CHECK(label_unseen == 0, "unseen labels in train: %d", label_unseen);
  CHECK(named == n_train - two, "single-shape captions naming their class: %d of %d", named, n_train - two);
  CHECK(two > n_train / 20 && two < n_train / 6, "two-shape images (1 in 10): %d of %d", two, n_train);
  CHECK(with_size > n_train / 6 && with_size < n_train / 2, "captions with a size word: %d of %d", with_size, n_train);
  CHECK(with_pos > n_train / 6 && with_pos < n_train / 2, "captions with a position: %d of %d", with_pos, n_train);
  CHECK(kind_first > n_train / 2 && kind_first < n_train * 7 / 10, "kind-first captions: %d of %d", kind_first,
        n_train);
  int seen_classes = 0;
  for (int c = 0; c < VLM_SHAPES_CLASSES; c++) seen_classes += seen_cls[c] > 0;
  CHECK(seen_classes == VLM_SHAPES_CLASSES - unseen, "train covers %d classes", seen_classes);

  /* val: one shape, label = class, all classes incl. unseen; colour in the image; neutral corners */
  int n_val = 1500, val_unseen = 0, val_named = 0, val_canonical = 0, colour_ok = 0, corners_ok = 0;
  int val_cls[VLM_SHAPES_CLASSES] = {0};
  static const uint8_t rgb[VLM_SHAPES_COLORS][3] = {{220, 30, 30},  {30, 160, 50},  {30, 70, 230},  {245, 215, 20},
                                                    {140, 50, 190}, {250, 130, 10}, {245, 105, 180}, {20, 200, 220}};
  for (int i = 0; i < n_val; i++) {
    vlm_image im;
    char *cap;
    int lab;
    if (vlm_shapes_generate(VLM_SHAPES_VAL, 1, i, 64, &im, &cap, &lab)) { CHECK(0, "val %d", i); break; }
    CHECK(lab >= 0 && lab < VLM_SHAPES_CLASSES, "val label %d", lab);
    if (lab < 0 || lab >= VLM_SHAPES_CLASSES) { vlm_image_free(&im); free(cap); continue; }
    val_cls[lab]++;
    val_unseen += vlm_shapes_class_unseen(lab);
    val_named += contains_class(cap, lab);
    char want[64];   /* a val caption is its class description */
    const char *cn = vlm_shapes_class_name(lab);
    snprintf(want, sizeof want, "%s %s", strchr("aeiou", cn[0]) ? "an" : "a", cn);
    val_canonical += !strcmp(cap, want);
    const uint8_t *col = rgb[lab / VLM_SHAPES_KINDS];
    int hits = 0;
    for (int p = 0; p < 64 * 64; p++) {
      const uint8_t *q = im.data + p * 3;
      if (abs(q[0] - col[0]) < 6 && abs(q[1] - col[1]) < 6 && abs(q[2] - col[2]) < 6) hits++;
    }
    colour_ok += hits >= 30;
    int neutral = 1;
    int cx[4] = {0, 63, 0, 63}, cy[4] = {0, 0, 63, 63};
    for (int k = 0; k < 4; k++) {
      const uint8_t *q = im.data + (cy[k] * 64 + cx[k]) * 3;
      int mx = q[0] > q[1] ? (q[0] > q[2] ? q[0] : q[2]) : (q[1] > q[2] ? q[1] : q[2]);
      int mn = q[0] < q[1] ? (q[0] < q[2] ? q[0] : q[2]) : (q[1] < q[2] ? q[1] : q[2]);
      if (mx - mn > 40) neutral = 0;
    }
    corners_ok += neutral;
    vlm_image_free(&im);
    free(cap);
  }
  int covered = 0;
  for (int c = 0; c < VLM_SHAPES_CLASSES; c++) covered += val_cls[c] > 0;
  CHECK(covered == VLM_SHAPES_CLASSES, "val covers %d of 48 classes", covered);
  CHECK(val_unseen > n_val / 16 && val_unseen < n_val / 5, "val unseen samples: %d of %d", val_unseen, n_val);
  CHECK(val_named == n_val, "val captions naming their class: %d of %d", val_named, n_val);
  CHECK(val_canonical == n_val, "val captions equal to 'a/an <class>': %d of %d", val_canonical, n_val);
  CHECK(colour_ok == n_val, "val images showing the class colour: %d of %d", colour_ok, n_val);
  CHECK(corners_ok == n_val, "val images with neutral corners: %d of %d", corners_ok, n_val);

  /* the source */
  vlm_source_opts o;
  vlm_source_opts_default(&o);
  vlm_source *s;
  CHECK(vlm_source_open(&s, "shapes:val:50", &o) == VLM_OK, "open shapes:val:50: %s", vlm_last_error());
  if (s) {
    int nc;
    CHECK(vlm_source_size(s) == 50 && vlm_source_type(s) == VLM_DS_SHAPES && !vlm_source_is_stream(s), "val:50 size");
    CHECK(vlm_source_classnames(s, &nc) && nc == VLM_SHAPES_CLASSES, "48 classnames");
    vlm_sample sm;
    CHECK(vlm_source_get(s, 3, &sm) == VLM_OK && sm.pixels.w == 64 && sm.label >= 0 && sm.caption, "get");
    CHECK(strstr(sm.name, "shapes:val:3") != NULL, "name %s", sm.name);
    vlm_sample_free(&sm);
    CHECK(vlm_source_get(s, 50, &sm) != VLM_OK, "out of range refused");
    vlm_source_close(s);
  }
  const char *sizes[][2] = {{"shapes", "1000000"}, {"shapes:val", "1000"}, {"shapes:7", "7"}, {"shapes:train:9", "9"}};
  for (int k = 0; k < 4; k++) {
    CHECK(vlm_source_open(&s, sizes[k][0], &o) == VLM_OK && vlm_source_size(s) == atoll(sizes[k][1]), "%s size", sizes[k][0]);
    vlm_source_close(s);
  }
  const char *bad[] = {"shapes:abc", "shapes:val:0", "shapes:-3", "shapes:val:5x", "shapes:"};
  for (int k = 0; k < 5; k++) {
    CHECK(vlm_source_open(&s, bad[k], &o) != VLM_OK && strstr(vlm_last_error(), bad[k]), "%s refused: %s", bad[k],
          vlm_last_error());
  }

  /* pixels pinned: a hash of every image (both splits, several sizes) as the plain per-pixel
   * renderer drew them, so a faster renderer must draw exactly the same images (the demo's
   * training data, and what its results were measured on) */
  {
    static const struct { int size, split; uint64_t want; } pin[] = {
        {32, 0, PIN_32_TRAIN}, {32, 1, PIN_32_VAL}, {64, 0, PIN_64_TRAIN}, {13, 0, PIN_13_TRAIN}, {224, 1, PIN_224_VAL}};
    for (int k = 0; k < (int)(sizeof pin / sizeof pin[0]); k++) {
      uint64_t h = 1469598103934665603ull;
      int n = pin[k].size > 100 ? 50 : 3000;
      for (int i = 0; i < n; i++) {
        vlm_image im;
        char *cap;
        int lab;
        if (vlm_shapes_generate(pin[k].split ? VLM_SHAPES_VAL : VLM_SHAPES_TRAIN, 5, i, pin[k].size, &im, &cap, &lab)) {
          CHECK(0, "generate %d", i);
          break;
        }
        for (size_t j = 0; j < (size_t)im.w * im.h * 3; j++) h = (h ^ im.data[j]) * 1099511628211ull;
        vlm_image_free(&im);
        free(cap);
      }
      printf("  pixel hash size %d %s: 0x%016llxull\n", pin[k].size, pin[k].split ? "val" : "train",
             (unsigned long long)h);
      CHECK(h == pin[k].want, "size %d %s: pixels differ from the pinned images", pin[k].size,
            pin[k].split ? "val" : "train");
    }
  }

  /* speed (printed): the loader needs >= 1000 images/s per core at 64 px */
  double t0 = now();
  int n_speed = 2000;
  for (int i = 0; i < n_speed; i++) {
    vlm_image im;
    char *cap;
    int lab;
    vlm_shapes_generate(VLM_SHAPES_TRAIN, 3, i, 64, &im, &cap, &lab);
    vlm_image_free(&im);
    free(cap);
  }
  double dt = now() - t0;
  printf("  shapes: %.0f images/s at 64 px (one thread)\n", n_speed / dt);
  return vt_finish();
}
