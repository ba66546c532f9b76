/* PyTorch files (core/torch_read.c, torch_write.c, zip_*.c, pickle.c):
 *   - the archives in tests/data/torch (made by make.py there with torch 1.13): names, shapes,
 *     dtypes and values of a state dict with every dtype and strided / shared views, an
 *     open_clip training checkpoint (+ vlm_st_keep_prefix), a TorchScript module, a
 *     protocol-4 pickle; the refusals (complex tensors, the legacy format);
 *   - vlm_st_writer_save_torch -> vlm_torch_open round trip of every dtype, zip64 records,
 *     atomic replacement; with VLM_TORCH_WRITE_DIR set, the written file is left there for
 *     tests/data/torch/check_written.py (torch.load, open_clip);
 *   - hostile input: truncations at every byte, every byte flipped, crafted pickles inside
 *     valid archives (stack and memo misuse, huge counts, deep nesting, shared-value bombs,
 *     bad tensors), crafted zip structures. Each fails with a message naming the file, or
 *     opens with every entry in bounds. */
#define _GNU_SOURCE
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gradcheck.h"

#ifndef VLM_TORCH_DATA
#error "VLM_TORCH_DATA (the folder tests/data/torch) must be defined by the build"
#endif

static char g_dir[4096];
static const char *g_shared;   /* ../shared (argv[1]), only for VLM_TORCH_WRITE_DIR */

static const char *tpath(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", g_dir, name);
  return buf;
}

static const char *dpath(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", VLM_TORCH_DATA, name);
  return buf;
}

static int in_owned(const vlm_safetensors *st, const vlm_st_entry *e) {
  return st->owned && (const uint8_t *)e->data >= (const uint8_t *)st->owned &&
         (const uint8_t *)e->data < (const uint8_t *)st->owned + st->owned_size;
}

/* Every entry's bytes lie in the mapping or in the copies; touch them all. */
static int entries_sane(const vlm_safetensors *st) {
  for (int i = 0; i < st->n_entries; i++) {
    const vlm_st_entry *e = &st->entries[i];
    if (e->ndim < 0 || e->ndim > VLM_MAX_DIMS || e->begin > e->end) return 0;
    uint64_t numel = 1;
    for (int d = 0; d < e->ndim; d++) {
      if (e->shape[d] < 0) return 0;
      numel *= (uint64_t)e->shape[d];
    }
    uint64_t nb = e->end - e->begin;
    if (nb != numel * vlm_dtype_size(e->dtype)) return 0;
    const uint8_t *p = e->data;
    if (in_owned(st, e)) {
      if (p + nb > (const uint8_t *)st->owned + st->owned_size) return 0;
    } else if (nb && (p < st->data || p + nb > st->data + st->data_size || p != st->data + e->begin)) {
      return 0;
    }
    volatile uint8_t acc = 0;
    for (uint64_t k = 0; k < nb; k++) acc ^= p[k];
    (void)acc;
    if (i && strcmp(st->entries[i - 1].name, e->name) >= 0) return 0;
  }
  return 1;
}

/* Open must fail with code (any failure when code is VLM_OK), naming the file and containing phrase. */
static void expect_fail(const char *path, vlm_status code, const char *phrase, const char *what) {
  vlm_safetensors st;
  vlm_error_clear();
  vlm_status s = vlm_torch_open(&st, path);
  CHECK(s != VLM_OK && (code == VLM_OK || s == code), "%s: open gave %s (%s)", what, vlm_status_name(s),
        vlm_last_error());
  CHECK(strstr(vlm_last_error(), path) != NULL, "%s: message names the file: %s", what, vlm_last_error());
  CHECK(!phrase || strstr(vlm_last_error(), phrase), "%s: message has \"%s\": %s", what, phrase ? phrase : "",
        vlm_last_error());
  if (s == VLM_OK) vlm_st_close(&st);
}

static const vlm_st_entry *want(const vlm_safetensors *st, const char *name, vlm_dtype dt, int ndim,
                                const int64_t *shape) {
  const vlm_st_entry *e = vlm_st_find(st, name);
  CHECK(e != NULL, "%s: entry %s present", st->path, name);
  if (!e) return NULL;
  int ok = e->dtype == dt && e->ndim == ndim;
  for (int d = 0; ok && d < ndim; d++) ok = e->shape[d] == shape[d];
  CHECK(ok, "%s: %s has dtype %s and %d dims (want %s, %d)", st->path, name, vlm_dtype_name(e->dtype), e->ndim,
        vlm_dtype_name(dt), ndim);
  return ok ? e : NULL;
}

/* ------------------------------------------------------------------ the committed files */

static void test_dtypes(void) {
  char p[4200];
  vlm_safetensors st;
  vlm_status s = vlm_torch_open(&st, dpath(p, sizeof p, "dtypes.pt"));
  CHECK(s == VLM_OK, "dtypes.pt opens: %s", vlm_last_error());
  if (s != VLM_OK) return;
  CHECK(st.n_entries == 19, "dtypes.pt: 19 tensors (got %d)", st.n_entries);
  CHECK(vlm_st_meta(&st, "format") && !strcmp(vlm_st_meta(&st, "format"), "torch"), "format torch");
  CHECK(entries_sane(&st), "dtypes.pt: entries in bounds and sorted");
  float f[64];
  const vlm_st_entry *e;
  if ((e = want(&st, "f32", VLM_F32, 3, (int64_t[]){2, 3, 4})) && vlm_st_read_f32(&st, e, f, 24) == VLM_OK) {
    int ok = 1;
    for (int i = 0; i < 24; i++) ok &= f[i] == i * 0.5f - 3;
    CHECK(ok, "f32 values");
    CHECK(!in_owned(&st, e) && (uintptr_t)e->data % 64 == 0, "f32 maps the file, 64-byte aligned");
    vlm_tensor t = vlm_st_tensor(e);
    CHECK(t.ndim == 3 && t.shape[2] == 4 && t.data == e->data, "vlm_st_tensor");
  }
  if ((e = want(&st, "tied", VLM_F32, 3, (int64_t[]){2, 3, 4})))
    CHECK(e->data == vlm_st_find(&st, "f32")->data, "tied: the same bytes as f32");
  if ((e = want(&st, "f16", VLM_F16, 2, (int64_t[]){3, 4})) && vlm_st_read_f32(&st, e, f, 12) == VLM_OK) {
    int ok = 1;
    for (int i = 0; i < 12; i++) ok &= f[i] == i / 8.0f - 0.5f;
    CHECK(ok, "f16 values");
  }
  if ((e = want(&st, "bf16", VLM_BF16, 1, (int64_t[]){10})) && vlm_st_read_f32(&st, e, f, 10) == VLM_OK) {
    int ok = 1;
    for (int i = 0; i < 10; i++) ok &= f[i] == i * 0.25f - 1;
    CHECK(ok, "bf16 values");
  }
  if ((e = want(&st, "f64", VLM_F64, 2, (int64_t[]){2, 3}))) {
    int ok = 1;
    for (int i = 0; i < 6; i++) ok &= ((const double *)e->data)[i] == i / 3.0;
    CHECK(ok, "f64 values");
  }
  if ((e = want(&st, "i64", VLM_I64, 1, (int64_t[]){5}))) {
    int ok = 1;
    for (int i = 0; i < 5; i++) ok &= ((const int64_t *)e->data)[i] == i * -1000000000007LL;
    CHECK(ok, "i64 values");
  }
  if ((e = want(&st, "i32", VLM_I32, 2, (int64_t[]){2, 3}))) {
    int ok = 1;
    for (int i = 0; i < 6; i++) ok &= ((const int32_t *)e->data)[i] == i * -7 + 100;
    CHECK(ok, "i32 values");
  }
  if ((e = want(&st, "i16", VLM_I16, 1, (int64_t[]){4}))) {
    int ok = 1;
    for (int i = 0; i < 4; i++) ok &= ((const int16_t *)e->data)[i] == i * -300;
    CHECK(ok, "i16 values");
  }
  if ((e = want(&st, "i8", VLM_I8, 1, (int64_t[]){8}))) {
    int ok = 1;
    for (int i = 0; i < 8; i++) ok &= ((const int8_t *)e->data)[i] == i - 4;
    CHECK(ok, "i8 values");
  }
  if ((e = want(&st, "u8", VLM_U8, 1, (int64_t[]){6}))) {
    int ok = 1;
    for (int i = 0; i < 6; i++) ok &= ((const uint8_t *)e->data)[i] == i * 50;
    CHECK(ok, "u8 values");
  }
  if ((e = want(&st, "bool", VLM_BOOL, 1, (int64_t[]){5}))) {
    int ok = 1;
    for (int i = 0; i < 5; i++) ok &= ((const uint8_t *)e->data)[i] == (i % 2 == 0);
    CHECK(ok, "bool values");
  }
  if ((e = want(&st, "scalar", VLM_F32, 0, NULL)) && vlm_st_read_f32(&st, e, f, 1) == VLM_OK)
    CHECK(f[0] == 3.25f, "0-dim value");
  if ((e = want(&st, "empty", VLM_F32, 2, (int64_t[]){0, 3}))) CHECK(e->end == e->begin, "empty: no bytes");
  if ((e = want(&st, "transposed", VLM_F32, 2, (int64_t[]){4, 3})) && vlm_st_read_f32(&st, e, f, 12) == VLM_OK) {
    int ok = 1;
    for (int r = 0; r < 4; r++)
      for (int c = 0; c < 3; c++) ok &= f[r * 3 + c] == (float)(r + 4 * c);
    CHECK(ok && in_owned(&st, e) && (uintptr_t)e->data % 64 == 0, "transposed: a contiguous copy, right values");
  }
  const vlm_st_entry *base = want(&st, "shared.base", VLM_F32, 1, (int64_t[]){20});
  if ((e = want(&st, "shared.slice", VLM_F32, 1, (int64_t[]){4})) && base) {
    const float *v = e->data;
    CHECK(v[0] == 5 && v[3] == 8 && (const float *)e->data == (const float *)base->data + 5 && !in_owned(&st, e),
          "shared.slice: a view into the shared storage at offset 5");
  }
  if ((e = want(&st, "shared.block", VLM_F32, 2, (int64_t[]){2, 2})) && vlm_st_read_f32(&st, e, f, 4) == VLM_OK)
    CHECK(f[0] == 7 && f[1] == 8 && f[2] == 12 && f[3] == 13 && in_owned(&st, e), "shared.block: strided copy");
  if ((e = want(&st, "expanded", VLM_F32, 2, (int64_t[]){2, 3})) && vlm_st_read_f32(&st, e, f, 6) == VLM_OK)
    CHECK(f[0] == 0 && f[2] == 2 && f[3] == 0 && f[5] == 2, "expanded (stride 0) copied");
  if ((e = want(&st, "param", VLM_F32, 1, (int64_t[]){4})) && vlm_st_read_f32(&st, e, f, 4) == VLM_OK)
    CHECK(f[0] == 1 && f[3] == 4, "Parameter values");
  vlm_st_close(&st);
}

static void test_checkpoint(void) {
  char p[4200];
  vlm_safetensors st;
  vlm_status s = vlm_torch_open(&st, dpath(p, sizeof p, "checkpoint.pt"));
  CHECK(s == VLM_OK, "checkpoint.pt opens: %s", vlm_last_error());
  if (s != VLM_OK) return;
  CHECK(st.n_entries == 8, "checkpoint.pt: 8 tensors (got %d)", st.n_entries);
  float f[48], g;
  const vlm_st_entry *e;
  int64_t wshape[4] = {4, 3, 2, 2};
  if ((e = want(&st, "optimizer.state.0.exp_avg", VLM_F32, 4, wshape)) && vlm_st_read_f32(&st, e, f, 48) == VLM_OK) {
    int ok = 1;
    for (int i = 0; i < 48; i++) ok &= fabsf(f[i] - 0.1f * (i / 100.0f)) <= 1e-7f;
    CHECK(ok, "exp_avg = 0.1 grad");
  }
  if ((e = want(&st, "optimizer.state.0.exp_avg_sq", VLM_F32, 4, wshape)) &&
      vlm_st_read_f32(&st, e, f, 48) == VLM_OK) {
    int ok = 1;
    for (int i = 0; i < 48; i++) ok &= fabsf(f[i] - 0.001f * (i / 100.0f) * (i / 100.0f)) <= 1e-9f;
    CHECK(ok, "exp_avg_sq = 0.001 grad^2");
  }
  if ((e = want(&st, "optimizer.state.1.step", VLM_F32, 0, NULL)) && vlm_st_read_f32(&st, e, &g, 1) == VLM_OK)
    CHECK(g == 1, "step");
  CHECK(want(&st, "optimizer.state.0.step", VLM_F32, 0, NULL) && want(&st, "optimizer.state.1.exp_avg", VLM_F32, 0, NULL)
        && want(&st, "optimizer.state.1.exp_avg_sq", VLM_F32, 0, NULL), "optimizer state names");
  CHECK(vlm_st_keep_prefix(&st, "state_dict.") == VLM_OK && st.n_entries == 2, "keep_prefix state_dict.");
  CHECK(vlm_st_keep_prefix(&st, "module.") == VLM_OK && st.n_entries == 2, "keep_prefix module.");
  CHECK(entries_sane(&st), "sorted after keep_prefix");
  if ((e = want(&st, "visual.conv1.weight", VLM_F32, 4, wshape)) && vlm_st_read_f32(&st, e, f, 48) == VLM_OK) {
    int ok = 1;
    for (int i = 0; i < 48; i++) ok &= f[i] == (float)i / 48.0f - 0.5f;
    CHECK(ok, "conv1 weight values");
  }
  if ((e = want(&st, "logit_scale", VLM_F32, 0, NULL)) && vlm_st_read_f32(&st, e, &g, 1) == VLM_OK)
    CHECK(g == 2.5f, "logit_scale");
  CHECK(vlm_st_keep_prefix(&st, "nothing.") == VLM_OK && st.n_entries == 0, "keep_prefix matching nothing");
  vlm_st_close(&st);
}

static void test_script(void) {
  char p[4200];
  vlm_safetensors st;
  vlm_status s = vlm_torch_open(&st, dpath(p, sizeof p, "script.pt"));
  CHECK(s == VLM_OK, "script.pt opens: %s", vlm_last_error());
  if (s != VLM_OK) return;
  CHECK(vlm_st_meta(&st, "format") && !strcmp(vlm_st_meta(&st, "format"), "torchscript"), "format torchscript");
  /* the same from the zip directory alone; a torch.save archive is not one; a legacy file is refused */
  int script = -1, plain = -1;
  CHECK(vlm_torch_kind(p, &script) == VLM_OK && script == 1, "vlm_torch_kind(script.pt): %d", script);
  CHECK(vlm_torch_kind(dpath(p, sizeof p, "dtypes.pt"), &plain) == VLM_OK && plain == 0, "vlm_torch_kind(dtypes.pt): %d",
        plain);
  CHECK(vlm_torch_kind(dpath(p, sizeof p, "legacy.pt"), &plain) != VLM_OK && strstr(vlm_last_error(), "legacy"),
        "vlm_torch_kind(legacy.pt): %s", vlm_last_error());
  static const struct { const char *name; int ndim; int64_t shape[4]; } W[] = {
      {"logit_scale", 0, {0}},
      {"visual.blocks.0.fc.bias", 1, {2}},   {"visual.blocks.0.fc.weight", 2, {2, 2}},
      {"visual.blocks.0.scale", 1, {2}},     {"visual.blocks.1.fc.bias", 1, {2}},
      {"visual.blocks.1.fc.weight", 2, {2, 2}}, {"visual.blocks.1.scale", 1, {2}},
      {"visual.conv1.weight", 4, {2, 3, 2, 2}}, {"visual.proj", 2, {2, 3}},
  };
  CHECK(st.n_entries == 10, "script.pt: 10 tensors (got %d)", st.n_entries);
  for (size_t k = 0; k < sizeof W / sizeof W[0]; k++) {
    const vlm_st_entry *e = want(&st, W[k].name, VLM_F32, W[k].ndim, W[k].shape);
    float f[32];
    int64_t n = (int64_t)(e ? (e->end - e->begin) / 4 : 0);
    if (!e || vlm_st_read_f32(&st, e, f, n) != VLM_OK) continue;
    int ok = 1;
    for (int64_t i = 0; i < n; i++) ok &= f[i] == i * 0.125f + (float)strlen(W[k].name);
    CHECK(ok, "%s values", W[k].name);
  }
  const vlm_st_entry *e = want(&st, "ids", VLM_I64, 1, (int64_t[]){4});
  if (e) CHECK(((const int64_t *)e->data)[0] == 3 && ((const int64_t *)e->data)[3] == 6, "ids values");
  vlm_st_close(&st);
}

static void test_proto4(void) {
  char p[4200];
  vlm_safetensors st;
  vlm_status s = vlm_torch_open(&st, dpath(p, sizeof p, "proto4.pt"));
  CHECK(s == VLM_OK, "proto4.pt opens: %s", vlm_last_error());
  if (s != VLM_OK) return;
  CHECK(st.n_entries == 4, "proto4.pt: 4 tensors (got %d)", st.n_entries);
  float f[4];
  const vlm_st_entry *e;
  if ((e = want(&st, "7", VLM_F32, 1, (int64_t[]){2})) && vlm_st_read_f32(&st, e, f, 2) == VLM_OK)
    CHECK(f[0] == 1.5f && f[1] == -2.5f, "int key 7");
  if ((e = want(&st, "a.b.0", VLM_F32, 1, (int64_t[]){3})) && vlm_st_read_f32(&st, e, f, 3) == VLM_OK)
    CHECK(f[0] == 0 && f[2] == 2, "a.b.0");
  if ((e = want(&st, "a.b.1.0", VLM_I32, 2, (int64_t[]){2, 2})))
    CHECK(((const int32_t *)e->data)[3] == 3, "a.b.1.0 (a tuple in a list)");
  if ((e = want(&st, "bf", VLM_BF16, 1, (int64_t[]){4})) && vlm_st_read_f32(&st, e, f, 4) == VLM_OK)
    CHECK(f[3] == 3, "bf");
  vlm_st_close(&st);
}

static void test_refused(void) {
  char p[4200];
  expect_fail(dpath(p, sizeof p, "complex.pt"), VLM_ERR_UNSUPPORTED, "ComplexFloatStorage", "complex tensor");
  expect_fail(dpath(p, sizeof p, "legacy.pt"), VLM_ERR_UNSUPPORTED, "torch.save(torch.load(f), f)", "legacy format");
  expect_fail(dpath(p, sizeof p, "legacy.pt"), VLM_ERR_UNSUPPORTED, "legacy", "legacy format named");
  expect_fail(tpath(p, sizeof p, "missing.pt"), VLM_ERR_IO, "cannot open", "missing file");
  expect_fail(g_dir, VLM_ERR_IO, "directory", "a directory");
  vt_write_file(tpath(p, sizeof p, "empty.pt"), "", 0);
  expect_fail(p, VLM_ERR_FORMAT, "empty", "empty file");
  vt_write_file(tpath(p, sizeof p, "text.pt"), "hello world\n", 12);
  expect_fail(p, VLM_ERR_FORMAT, "not a PyTorch file", "text file");
  CHECK(vlm_torch_sniff(dpath(p, sizeof p, "dtypes.pt")) == 1, "sniff: a torch file");
  CHECK(vlm_torch_sniff(dpath(p, sizeof p, "legacy.pt")) == 0, "sniff: legacy");
  CHECK(vlm_torch_sniff(tpath(p, sizeof p, "missing.pt")) == 0, "sniff: missing");
  CHECK(vlm_torch_sniff(g_dir) == 0, "sniff: a directory");
}

/* ------------------------------------------------------------------ writing */

#define NDT 10
static const vlm_dtype DTS[NDT] = {VLM_F32, VLM_F16, VLM_BF16, VLM_F64, VLM_I64,
                                   VLM_I32, VLM_I16, VLM_I8,   VLM_U8,  VLM_BOOL};

/* The round-trip content (check_written.py checks the same): tensor "t.<DTYPE>" of shape [2, 3]
 * holding i - 2 (bool: i % 2, u8: i); "scalar" (F32 0-dim) 7.5; "empty" (F32 [0, 4]); "deep"
 * (F32, 8 dims of 1 and 2) holding i; "module.visual.x" (F32 [3]) holding 0.5 i; "名前" (I64 [1]) 42. */
typedef struct {
  uint8_t t[NDT][48];
  float scalar, deep[2], vx[3];
  int64_t jp;
} rt_data;

static void rt_fill(rt_data *d) {
  for (int k = 0; k < NDT; k++)
    for (int i = 0; i < 6; i++) {
      double v = DTS[k] == VLM_BOOL ? i % 2 : DTS[k] == VLM_U8 ? i : i - 2;
      uint8_t *p = d->t[k] + i * vlm_dtype_size(DTS[k]);
      switch (DTS[k]) {
        case VLM_F32: { float x = (float)v; memcpy(p, &x, 4); break; }
        case VLM_F16: { uint16_t x = vlm_f32_to_f16((float)v); memcpy(p, &x, 2); break; }
        case VLM_BF16: { uint16_t x = vlm_f32_to_bf16((float)v); memcpy(p, &x, 2); break; }
        case VLM_F64: memcpy(p, &v, 8); break;
        case VLM_I64: { int64_t x = (int64_t)v; memcpy(p, &x, 8); break; }
        case VLM_I32: { int32_t x = (int32_t)v; memcpy(p, &x, 4); break; }
        case VLM_I16: { int16_t x = (int16_t)v; memcpy(p, &x, 2); break; }
        default: *(int8_t *)p = (int8_t)v; break;
      }
    }
  d->scalar = 7.5f;
  d->deep[0] = 0;
  d->deep[1] = 1;
  for (int i = 0; i < 3; i++) d->vx[i] = 0.5f * i;
  d->jp = 42;
}

static vlm_st_writer *rt_writer(rt_data *d) {
  rt_fill(d);
  vlm_st_writer *w = vlm_st_writer_new();
  char nm[64];
  int64_t sh[8] = {2, 3};
  for (int k = 0; k < NDT; k++) {
    snprintf(nm, sizeof nm, "t.%s", vlm_dtype_name(DTS[k]));
    vlm_st_writer_add(w, nm, DTS[k], 2, sh, d->t[k]);
  }
  vlm_st_writer_add(w, "scalar", VLM_F32, 0, NULL, &d->scalar);
  vlm_st_writer_add(w, "empty", VLM_F32, 2, (int64_t[]){0, 4}, NULL);
  vlm_st_writer_add(w, "deep", VLM_F32, 8, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 2}, d->deep);
  vlm_st_writer_add(w, "module.visual.x", VLM_F32, 1, (int64_t[]){3}, d->vx);
  vlm_st_writer_add(w, "名前", VLM_I64, 1, (int64_t[]){1}, &d->jp);
  return w;
}

static void rt_check(const char *path, const rt_data *d) {
  vlm_safetensors st;
  vlm_status s = vlm_torch_open(&st, path);
  CHECK(s == VLM_OK, "%s reads back: %s", path, vlm_last_error());
  if (s != VLM_OK) return;
  CHECK(st.n_entries == NDT + 5 && entries_sane(&st), "%s: %d entries", path, st.n_entries);
  char nm[64];
  for (int k = 0; k < NDT; k++) {
    snprintf(nm, sizeof nm, "t.%s", vlm_dtype_name(DTS[k]));
    const vlm_st_entry *e = want(&st, nm, DTS[k], 2, (int64_t[]){2, 3});
    if (e) CHECK(!memcmp(e->data, d->t[k], 6 * vlm_dtype_size(DTS[k])) && !in_owned(&st, e), "%s bytes", nm);
  }
  const vlm_st_entry *e;
  if ((e = want(&st, "scalar", VLM_F32, 0, NULL))) CHECK(*(const float *)e->data == 7.5f, "scalar");
  CHECK(want(&st, "empty", VLM_F32, 2, (int64_t[]){0, 4}) != NULL, "empty");
  if ((e = want(&st, "deep", VLM_F32, 8, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 2})))
    CHECK(((const float *)e->data)[1] == 1, "8 dims");
  if ((e = want(&st, "module.visual.x", VLM_F32, 1, (int64_t[]){3}))) CHECK(((const float *)e->data)[2] == 1, "x");
  if ((e = want(&st, "名前", VLM_I64, 1, (int64_t[]){1}))) CHECK(*(const int64_t *)e->data == 42, "UTF-8 name");
  vlm_st_close(&st);
}

static void test_write(void) {
  char p[4200], q[4200];
  rt_data d;
  vlm_st_writer *w = rt_writer(&d);
  tpath(p, sizeof p, "rt.pt");
  CHECK(vlm_st_writer_save_torch(w, p) == VLM_OK, "save_torch: %s", vlm_last_error());
  rt_check(p, &d);
  /* the archive: folder = the stem, records 64-byte aligned */
  size_t n = 0;
  uint8_t *b = vt_read_file(p, &n);
  vlm_zip z;
  if (b && vlm_zip_open(&z, p, b, n) == VLM_OK) {
    CHECK(!strcmp(z.entries[0].name, "rt/data.pkl") && vlm_zip_find(&z, "rt/version") &&
          vlm_zip_find(&z, "rt/byteorder") && vlm_zip_find(&z, "rt/data/14"), "archive layout");
    int al = 1;
    for (int i = 0; i < z.n; i++) al &= z.entries[i].offset % 64 == 0;
    CHECK(al, "records start at multiples of 64");
    vlm_zip_close(&z);
  } else {
    CHECK(0, "rt.pt is a zip: %s", vlm_last_error());
  }
  free(b);
  const char *keep = getenv("VLM_TORCH_WRITE_DIR");
  if (keep && keep[0]) {
    snprintf(q, sizeof q, "%s/vlm_written.pt", keep);
    CHECK(vlm_st_writer_save_torch(w, q) == VLM_OK, "save for check_written.py: %s", vlm_last_error());
    printf("wrote %s for tests/data/torch/check_written.py\n", q);
    /* an open_clip state dict: the tiny-clip fixture's weights, when the shared dir is here */
    char fx[4200];
    vlm_safetensors src;
    if (g_shared && snprintf(fx, sizeof fx, "%s/fixtures/tiny-clip/model.safetensors", g_shared) > 0 &&
        vlm_st_open(&src, fx) == VLM_OK) {
      vlm_st_writer *mw = vlm_st_writer_new();
      for (int i = 0; i < src.n_entries; i++) {
        vlm_tensor t = vlm_st_tensor(&src.entries[i]);
        vlm_st_writer_add_tensor(mw, src.entries[i].name, &t);
      }
      snprintf(q, sizeof q, "%s/tiny-clip.pt", keep);
      CHECK(vlm_st_writer_save_torch(mw, q) == VLM_OK, "save tiny-clip as a torch file: %s", vlm_last_error());
      printf("wrote %s (from %s) for check_written.py\n", q, fx);
      vlm_st_writer_free(mw);
      vlm_st_close(&src);
    }
  }
  vlm_st_writer_free(w);

  /* a file name without an extension, and a dotfile: the folder is still named */
  w = rt_writer(&d);
  CHECK(vlm_st_writer_save_torch(w, tpath(q, sizeof q, ".hidden")) == VLM_OK, "save to a dotfile");
  rt_check(q, &d);
  vlm_st_writer_free(w);

  /* refusals leave the old file as it was */
  size_t n0 = 0, n1 = 0;
  uint8_t *before = vt_read_file(p, &n0);
  w = vlm_st_writer_new();
  uint16_t u16[2] = {1, 2};
  vlm_st_writer_add(w, "u", VLM_U16, 1, (int64_t[]){2}, u16);
  vlm_status s = vlm_st_writer_save_torch(w, p);
  CHECK(s == VLM_ERR_UNSUPPORTED && strstr(vlm_last_error(), p) && strstr(vlm_last_error(), "U16"),
        "U16 refused: %s", vlm_last_error());
  vlm_st_writer_add(w, "", VLM_F32, 0, NULL, &d.scalar);   /* an earlier failure on the writer */
  s = vlm_st_writer_save_torch(w, p);
  CHECK(s == VLM_ERR_ARG && strstr(vlm_last_error(), "earlier call"), "earlier failure: %s", vlm_last_error());
  vlm_st_writer_free(w);
  uint8_t *after = vt_read_file(p, &n1);
  CHECK(before && after && n0 == n1 && !memcmp(before, after, n0), "refused saves leave the old file");
  free(before);
  free(after);
  w = vlm_st_writer_new();
  s = vlm_st_writer_save_torch(w, tpath(q, sizeof q, "no/such/dir/x.pt"));
  CHECK(s == VLM_ERR_IO && strstr(vlm_last_error(), q), "missing folder: %s", vlm_last_error());
  /* an empty state dict */
  CHECK(vlm_st_writer_save_torch(w, tpath(q, sizeof q, "none.pt")) == VLM_OK, "empty writer saves");
  vlm_safetensors st;
  CHECK(vlm_torch_open(&st, q) == VLM_OK && st.n_entries == 0, "empty writer reads back: %s", vlm_last_error());
  vlm_st_close(&st);
  vlm_st_writer_free(w);
  if (vlm_cuda_available()) {
    float x[5] = {1, 2, 3, 4, 5};
    void *dev = vlm_device_alloc(VLM_CUDA, sizeof x);
    vlm_memcpy(dev, VLM_CUDA, x, VLM_CPU, sizeof x);
    vlm_tensor t = vlm_tensor_make(dev, VLM_F32, VLM_CUDA, 1, (int64_t[]){5});
    w = vlm_st_writer_new();
    vlm_st_writer_add_tensor(w, "dev", &t);
    CHECK(vlm_st_writer_save_torch(w, tpath(q, sizeof q, "dev.pt")) == VLM_OK, "device tensor saved");
    vlm_st_writer_free(w);
    vlm_device_free(VLM_CUDA, dev);
    if (vlm_torch_open(&st, q) == VLM_OK) {
      CHECK(st.n_entries == 1 && !memcmp(st.entries[0].data, x, sizeof x), "device tensor read back");
      vlm_st_close(&st);
    }
  }
}

/* ------------------------------------------------------------------ crafted archives */

typedef struct { uint8_t *p; size_t n, cap; } bytes;

static void bput(bytes *b, const void *s, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
}
static void bstr(bytes *b, const char *s) { bput(b, s, strlen(s)); }
#define BLIT(b, lit) bput((b), (lit), sizeof(lit) - 1)   /* a literal that may hold NULs */
static void bop(bytes *b, int c) { uint8_t x = (uint8_t)c; bput(b, &x, 1); }
static void bint(bytes *b, int64_t v) {   /* BININT or LONG1 */
  if (v >= INT32_MIN && v <= INT32_MAX) {
    bop(b, 'J');
    for (int i = 0; i < 4; i++) bop(b, (int)(((uint64_t)v >> (8 * i)) & 0xff));
  } else {
    bop(b, 0x8a);
    bop(b, 8);
    for (int i = 0; i < 8; i++) bop(b, (int)(((uint64_t)v >> (8 * i)) & 0xff));
  }
}
static void bunicode(bytes *b, const char *s) {
  size_t n = strlen(s);
  bop(b, 'X');
  for (int i = 0; i < 4; i++) bop(b, (int)((n >> (8 * i)) & 0xff));
  bput(b, s, n);
}

/* A tensor: _rebuild_tensor_v2(('storage', torch.<type>, key, 'cpu', numel), offset, size, stride, False, {}). */
static void btensor(bytes *b, const char *type, const char *key, int64_t numel, int64_t offset, int nd,
                    const int64_t *size, const int64_t *stride) {
  bstr(b, "ctorch._utils\n_rebuild_tensor_v2\n((");
  bunicode(b, "storage");
  bstr(b, "ctorch\n");
  bstr(b, type);
  bstr(b, "\n");
  bunicode(b, key);
  bunicode(b, "cpu");
  bint(b, numel);
  bstr(b, "tQ");
  bint(b, offset);
  bop(b, '(');
  for (int d = 0; d < nd; d++) bint(b, size[d]);
  bop(b, 't');
  bop(b, '(');
  for (int d = 0; d < nd; d++) bint(b, stride[d]);
  bstr(b, "t\x89}tR");
}

/* An archive "arch/": data.pkl = pk, data/0 = 16 floats 0..15, data/1 = 16 int32 0..15, version. */
static void write_archive(const char *path, const bytes *pk, int force64) {
  FILE *f = fopen(path, "wb");
  vlm_zip_writer zw;
  vlm_zip_writer_init(&zw, f, path);
  zw.force_zip64 = force64;
  float x[16];
  int32_t y[16];
  for (int i = 0; i < 16; i++) { x[i] = (float)i; y[i] = i; }
  vlm_status s = vlm_zip_writer_add(&zw, "arch/data.pkl", pk->p, pk->n, VLM_CPU);
  if (s == VLM_OK) s = vlm_zip_writer_add(&zw, "arch/data/0", x, sizeof x, VLM_CPU);
  if (s == VLM_OK) s = vlm_zip_writer_add(&zw, "arch/data/1", y, sizeof y, VLM_CPU);
  if (s == VLM_OK) s = vlm_zip_writer_add(&zw, "arch/version", "3\n", 2, VLM_CPU);
  if (s == VLM_OK) s = vlm_zip_writer_finish(&zw);
  vlm_zip_writer_free(&zw);
  fclose(f);
  if (s != VLM_OK) { fprintf(stderr, "write_archive: %s\n", vlm_last_error()); abort(); }
}

/* {"w": tensor} with the given view of storage 0 (FloatStorage, 16). */
static void pk_one(bytes *b, const char *type, int64_t numel, int64_t offset, int nd, const int64_t *size,
                   const int64_t *stride) {
  b->n = 0;
  bstr(b, "\x80\x02}");
  bunicode(b, "w");
  btensor(b, type, "0", numel, offset, nd, size, stride);
  bstr(b, "s.");
}

static void expect_pickle_fail(const bytes *pk, const char *phrase, const char *what) {
  char p[4200];
  write_archive(tpath(p, sizeof p, "crafted.pt"), pk, 0);
  expect_fail(p, VLM_OK, phrase, what);
}

static int open_count(const bytes *pk, int *n) {
  char p[4200];
  write_archive(tpath(p, sizeof p, "crafted.pt"), pk, 0);
  vlm_safetensors st;
  if (vlm_torch_open(&st, p) != VLM_OK) return 0;
  *n = st.n_entries;
  int ok = entries_sane(&st);
  vlm_st_close(&st);
  return ok;
}

static void test_crafted_pickles(void) {
  bytes b = {0};
  int n = 0;
  /* valid: a view of storage 0, zip64 records everywhere */
  pk_one(&b, "FloatStorage", 16, 2, 2, (int64_t[]){2, 3}, (int64_t[]){4, 1});
  char p[4200];
  write_archive(tpath(p, sizeof p, "zip64.pt"), &b, 1);
  vlm_safetensors st;
  vlm_status s = vlm_torch_open(&st, p);
  CHECK(s == VLM_OK, "zip64 archive: %s", vlm_last_error());
  if (s == VLM_OK) {
    float f[6];
    CHECK(st.n_entries == 1 && vlm_st_read_f32(&st, &st.entries[0], f, 6) == VLM_OK && f[0] == 2 && f[2] == 4 &&
              f[3] == 6 && f[5] == 8, "zip64: the view's values");
    vlm_st_close(&st);
  }
  CHECK(open_count(&b, &n) && n == 1, "the same without zip64");
  const char *keep = getenv("VLM_TORCH_WRITE_DIR");
  if (keep && keep[0]) {   /* for check_written.py: zip64 records as PyTorch reads them */
    snprintf(p, sizeof p, "%s/zip64.pt", keep);
    write_archive(p, &b, 1);
    printf("wrote %s for check_written.py\n", p);
  }

  pk_one(&b, "FloatStorage", 16, 10, 2, (int64_t[]){2, 3}, (int64_t[]){4, 1});
  expect_pickle_fail(&b, "reaches element 16", "view past the storage");
  pk_one(&b, "FloatStorage", 17, 0, 1, (int64_t[]){17}, (int64_t[]){1});
  expect_pickle_fail(&b, "has 64 bytes", "storage larger than its record");
  pk_one(&b, "FloatStorage", 16, 0, 1, (int64_t[]){-1}, (int64_t[]){1});
  expect_pickle_fail(&b, "size and stride", "negative size");
  pk_one(&b, "FloatStorage", 16, 0, 1, (int64_t[]){2}, (int64_t[]){-1});
  expect_pickle_fail(&b, "size and stride", "negative stride");
  pk_one(&b, "FloatStorage", 16, 0, 2, (int64_t[]){1LL << 40, 1LL << 40}, (int64_t[]){1, 1});
  expect_pickle_fail(&b, "overflows", "overflowing size");
  pk_one(&b, "FloatStorage", 16, 0, 2, (int64_t[]){2, 2}, (int64_t[]){INT64_MAX, 1});
  expect_pickle_fail(&b, "overflows", "overflowing stride");
  pk_one(&b, "FloatStorage", 16, INT64_MAX, 1, (int64_t[]){1}, (int64_t[]){1});
  expect_pickle_fail(&b, "overflows", "huge offset");
  pk_one(&b, "FloatStorage", 16, INT64_MAX, 1, (int64_t[]){0}, (int64_t[]){1});
  CHECK(open_count(&b, &n) == 0, "huge offset of an empty tensor refused too");
  pk_one(&b, "FloatStorage", 16, 0, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1});
  expect_pickle_fail(&b, "at most 8", "9 dims");
  pk_one(&b, "ComplexDoubleStorage", 16, 0, 1, (int64_t[]){1}, (int64_t[]){1});
  expect_pickle_fail(&b, "ComplexDoubleStorage", "unknown storage type");
  pk_one(&b, "FloatStorage", 16, 0, 2, (int64_t[]){3, 1}, (int64_t[]){0, 0});
  CHECK(open_count(&b, &n) && n == 1, "stride 0 everywhere is fine");

  /* one storage, two dtypes */
  b.n = 0;
  bstr(&b, "\x80\x02(");
  btensor(&b, "FloatStorage", "0", 16, 0, 1, (int64_t[]){2}, (int64_t[]){1});
  btensor(&b, "IntStorage", "0", 16, 0, 1, (int64_t[]){2}, (int64_t[]){1});
  bstr(&b, "l.");
  expect_pickle_fail(&b, "two dtypes", "a storage with two dtypes");
  /* a storage key with no record */
  b.n = 0;
  bstr(&b, "\x80\x02(");
  btensor(&b, "FloatStorage", "7", 16, 0, 1, (int64_t[]){2}, (int64_t[]){1});
  bstr(&b, "l.");
  expect_pickle_fail(&b, "no record arch/data/7", "missing storage record");
  /* the same name twice */
  b.n = 0;
  bstr(&b, "\x80\x02}(");
  bunicode(&b, "a.b");
  btensor(&b, "FloatStorage", "0", 16, 0, 1, (int64_t[]){2}, (int64_t[]){1});
  bunicode(&b, "a");
  bstr(&b, "}");
  bunicode(&b, "b");
  btensor(&b, "FloatStorage", "0", 16, 0, 1, (int64_t[]){2}, (int64_t[]){1});
  bstr(&b, "su.");
  expect_pickle_fail(&b, "two tensors are named \"a.b\"", "duplicate names");
  /* unknown globals are opaque, never called; a list holding itself; an object's attributes */
  b.n = 0;
  bstr(&b, "\x80\x02}(");
  bunicode(&b, "cmd");
  bstr(&b, "cos\nsystem\n(");
  bunicode(&b, "false");
  bstr(&b, "tR");
  bunicode(&b, "loop");
  BLIT(&b, "]q\x00h\x00");
  btensor(&b, "FloatStorage", "0", 16, 0, 1, (int64_t[]){2}, (int64_t[]){1});
  bstr(&b, "\x86" "a");    /* loop.append((loop, t)) */
  bunicode(&b, "obj");
  bstr(&b, "cfoo\nBar\n)\x81}(");
  bunicode(&b, "weight");
  btensor(&b, "FloatStorage", "0", 16, 4, 1, (int64_t[]){2}, (int64_t[]){1});
  bstr(&b, "ubu.");
  CHECK(open_count(&b, &n) && n == 2, "opaque globals, a cycle, object attributes: %s", vlm_last_error());
  write_archive(tpath(p, sizeof p, "crafted.pt"), &b, 0);
  if (vlm_torch_open(&st, p) == VLM_OK) {
    CHECK(vlm_st_find(&st, "loop.0.1") && vlm_st_find(&st, "obj.weight"), "names through a cycle and attributes");
    vlm_st_close(&st);
  }
  /* a tensor saved alone */
  b.n = 0;
  bstr(&b, "\x80\x02");
  btensor(&b, "FloatStorage", "0", 16, 0, 1, (int64_t[]){2}, (int64_t[]){1});
  bstr(&b, ".");
  write_archive(p, &b, 0);
  if (vlm_torch_open(&st, p) == VLM_OK) {
    CHECK(st.n_entries == 1 && vlm_st_find(&st, ""), "a tensor alone is named \"\"");
    vlm_st_close(&st);
  } else {
    CHECK(0, "a tensor alone: %s", vlm_last_error());
  }

  /* the machine */
#define PK(lit) lit, sizeof(lit) - 1
  static const struct { const char *pk; size_t n; const char *phrase; } M[] = {
      {PK(""), "without STOP"},
      {PK("\x80\x02"), "without STOP"},
      {PK("\x80\x02."), "nothing on the stack"},
      {PK("\x80\x09N."), "protocol 9"},
      {PK("\x80\x02h\x05."), "never stored"},
      {PK("\x80\x02Nj\xf0\xff\xff\xff."), "never stored"},
      {PK("\x80\x02Nr\xff\xff\xff\xff."), "too large"},
      {PK("\x80\x02R."), "stack is empty"},
      {PK("\x80\x02K\x01t."), "no MARK"},
      {PK("\x80\x02(K\x01" "e."), "APPENDS"},
      {PK("\x80\x02(K\x01K\x02u."), "SETITEMS"},
      {PK("\x80\x02NK\x01K\x02s."), "not a dict"},
      {PK("\x80\x02X\xff\xff\xff\xff."), "runs past"},
      {PK("\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\x7f."), "runs past"},
      {PK("\x80\x02\x8b\xff\xff\xff\x7f."), "ends inside"},
      {PK("\x80\x02\x8b\xff\xff\xff\xff."), "negative"},
      {PK("\x80\x02\x82\x01."), "extension registry"},
      {PK("\x80\x05\x97."), "out-of-band"},
      {PK("\x80\x02\xff."), "unknown opcode"},
      {PK("\x80\x02(\x85."), "TUPLE1"},
      {PK("\x80\x02" "cfoo"), "no newline"},
      {PK("\x80\x02K\x01K\x02\x93."), "STACK_GLOBAL"},
      {PK("\x80\x02(X\x07\x00\x00\x00storageK\x01K\x01K\x01K\x01tQ."), "not a class"},
      {PK("\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n)R."), "without (storage"},
      {PK("\x80\x02" "ctorch._utils\n_rebuild_parameter\n)R."), "without a tensor"},
      {PK("\x80\x02" "ctorch._utils\n_rebuild_qtensor\n)R."), "quantized"},
  };
  for (size_t k = 0; k < sizeof M / sizeof M[0]; k++) {
    b.n = 0;
    bput(&b, M[k].pk, M[k].n);
    char what[64];
    snprintf(what, sizeof what, "machine case %zu", k);
    expect_pickle_fail(&b, M[k].phrase, what);
  }
  /* keys that are not UTF-8 text: refused where they name a tensor, ignored elsewhere */
  b.n = 0;
  BLIT(&b, "\x80\x02}(X\x01\x00\x00\x00\xffK\x01X\x02\x00\x00\x00" "a\x00");
  btensor(&b, "FloatStorage", "0", 16, 0, 1, (int64_t[]){2}, (int64_t[]){1});
  bstr(&b, "u.");
  expect_pickle_fail(&b, "not valid UTF-8", "a NUL in a tensor's key");
  b.n = 0;
  BLIT(&b, "\x80\x02}(X\x01\x00\x00\x00\xffK\x01X\x01\x00\x00\x00" "a");
  btensor(&b, "FloatStorage", "0", 16, 0, 1, (int64_t[]){2}, (int64_t[]){1});
  bstr(&b, "u.");
  CHECK(open_count(&b, &n) && n == 1, "a bad key over a non-tensor is ignored: %s", vlm_last_error());
  /* deep nesting: 100000 lists inside each other */
  b.n = 0;
  bstr(&b, "\x80\x02");
  for (int i = 0; i < 100000; i++) bop(&b, ']');
  for (int i = 0; i < 99999; i++) bop(&b, 'a');
  bop(&b, '.');
  expect_pickle_fail(&b, "nested more than", "deep nesting");
  /* shared-value bomb: l0 = [t], l(k+1) = [lk, lk], 40 levels: 2^40 paths */
  b.n = 0;
  bstr(&b, "\x80\x02]");
  btensor(&b, "FloatStorage", "0", 16, 0, 1, (int64_t[]){2}, (int64_t[]){1});
  bstr(&b, "a");
  for (int i = 0; i < 40; i++) BLIT(&b, "q\x00(h\x00h\x00l");
  bop(&b, '.');
  expect_pickle_fail(&b, "referenced too often", "shared-value bomb");
  b.n = 0;
  bstr(&b, "\x80\x02]Na");   /* the same without a tensor: the walk stops too */
  for (int i = 0; i < 40; i++) BLIT(&b, "q\x00(h\x00h\x00l");
  bop(&b, '.');
  expect_pickle_fail(&b, "values to walk", "shared-value bomb without tensors");
  /* many marks and a long flat list are fine */
  b.n = 0;
  bstr(&b, "\x80\x02(");
  for (int i = 0; i < 100000; i++) bstr(&b, "N");
  bstr(&b, "l.");
  CHECK(open_count(&b, &n) && n == 0, "a long list of None: no tensors");
  free(b.p);
}

/* ------------------------------------------------------------------ crafted zips */

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static void wr16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }

/* The central directory record of name in b (NULL if none). */
static uint8_t *central(uint8_t *b, size_t n, const char *name) {
  size_t nl = strlen(name);
  for (size_t i = 0; i + 46 + nl <= n; i++)
    if (rd32(b + i) == 0x02014b50u && (b[i + 28] | b[i + 29] << 8) == (int)nl && !memcmp(b + i + 46, name, nl))
      return b + i;
  return NULL;
}

static uint8_t *eocd(uint8_t *b, size_t n) { return b + n - 22; }

/* Write b patched by fn to crafted.pt and expect a failure with phrase. */
static void zip_case(const uint8_t *src, size_t n, void (*fn)(uint8_t *, size_t *), const char *phrase,
                     const char *what) {
  uint8_t *b = malloc(n + 4096);
  memcpy(b, src, n);
  size_t m = n;
  fn(b, &m);
  char p[4200];
  vt_write_file(tpath(p, sizeof p, "crafted.pt"), b, m);
  expect_fail(p, VLM_OK, phrase, what);
  free(b);
}

static void z_cd_outside(uint8_t *b, size_t *n) { wr32(eocd(b, *n) + 16, (uint32_t)*n); }
static void z_count(uint8_t *b, size_t *n) { wr16(eocd(b, *n) + 10, 0xfff0); wr16(eocd(b, *n) + 8, 0xfff0); }
static void z_dup(uint8_t *b, size_t *n) {   /* data/1 renamed data/0 (both headers) */
  uint8_t *c = central(b, *n, "arch/data/1");
  memcpy(b + rd32(c + 42) + 30, "arch/data/0", 11);
  memcpy(c + 46, "arch/data/0", 11);
}
static void z_dotdot(uint8_t *b, size_t *n) { memcpy(central(b, *n, "arch/data/1") + 46, "arch/../1xx", 11); }
static void z_method(uint8_t *b, size_t *n) { wr16(central(b, *n, "arch/data.pkl") + 10, 8); }
static void z_crypt(uint8_t *b, size_t *n) { wr16(central(b, *n, "arch/data.pkl") + 8, 1); }
static void z_crc(uint8_t *b, size_t *n) { wr32(central(b, *n, "arch/data.pkl") + 16, 1234); }
static void z_crc_storage(uint8_t *b, size_t *n) { wr32(central(b, *n, "arch/data/0") + 16, 1234); }
static void z_size(uint8_t *b, size_t *n) { wr32(central(b, *n, "arch/data/1") + 20, 1u << 30); wr32(central(b, *n, "arch/data/1") + 24, 1u << 30); }
static void z_local(uint8_t *b, size_t *n) { wr32(central(b, *n, "arch/data/1") + 42, 3); }
/* data/1's header moved into data/0's bytes, where a copy of its local header is put */
static void z_overlap(uint8_t *b, size_t *n) {
  uint8_t *c0 = central(b, *n, "arch/data/0"), *c1 = central(b, *n, "arch/data/1");
  uint32_t h0 = rd32(c0 + 42), h1 = rd32(c1 + 42);
  uint32_t d0 = h0 + 30 + (b[h0 + 26] | b[h0 + 27] << 8) + (b[h0 + 28] | b[h0 + 29] << 8);
  memcpy(b + d0, b + h1, 30 + 11);
  wr16(b + d0 + 28, 0);
  wr32(c1 + 42, d0);
}
static void z_nofolder(uint8_t *b, size_t *n) {
  /* the first entry's name without a folder: "arch_data.pkl" (both headers) */
  uint8_t *c = central(b, *n, "arch/data.pkl");
  uint32_t h = rd32(c + 42);
  c[46 + 4] = '_';
  b[h + 30 + 4] = '_';
}
static void test_crafted_zips(void) {
  bytes pk = {0};
  pk_one(&pk, "FloatStorage", 16, 0, 1, (int64_t[]){4}, (int64_t[]){1});
  char p[4200];
  write_archive(tpath(p, sizeof p, "base.pt"), &pk, 0);
  size_t n = 0;
  uint8_t *b = vt_read_file(p, &n);
  zip_case(b, n, z_cd_outside, "outside the file", "central directory outside the file");
  zip_case(b, n, z_count, "claims", "huge entry count");
  zip_case(b, n, z_dup, "appears twice", "duplicate entry");
  zip_case(b, n, z_dotdot, "\"..\" part", "a .. name");
  zip_case(b, n, z_method, "compressed", "compressed data.pkl");
  zip_case(b, n, z_crypt, "encrypted", "encrypted data.pkl");
  zip_case(b, n, z_crc, "CRC-32 mismatch", "data.pkl CRC");
  zip_case(b, n, z_crc_storage, "CRC-32 mismatch", "storage CRC");
  zip_case(b, n, z_size, "run past", "entry past the data");
  zip_case(b, n, z_local, "no local header", "local header offset");
  zip_case(b, n, z_overlap, "overlap", "overlapping entries");
  zip_case(b, n, z_nofolder, "outside an archive folder", "no archive folder");

  /* byteorder big, no data.pkl */
  FILE *f = fopen(tpath(p, sizeof p, "big.pt"), "wb");
  vlm_zip_writer zw;
  vlm_zip_writer_init(&zw, f, p);
  vlm_zip_writer_add(&zw, "big/data.pkl", pk.p, pk.n, VLM_CPU);
  vlm_zip_writer_add(&zw, "big/byteorder", "big", 3, VLM_CPU);
  vlm_zip_writer_finish(&zw);
  vlm_zip_writer_free(&zw);
  fclose(f);
  expect_fail(p, VLM_ERR_UNSUPPORTED, "big-endian", "big-endian archive");
  f = fopen(tpath(p, sizeof p, "nopkl.pt"), "wb");
  vlm_zip_writer_init(&zw, f, p);
  vlm_zip_writer_add(&zw, "x/version", "3\n", 2, VLM_CPU);
  vlm_zip_writer_finish(&zw);
  vlm_zip_writer_free(&zw);
  fclose(f);
  expect_fail(p, VLM_ERR_FORMAT, "no x/data.pkl", "no data.pkl");

  /* every truncation fails cleanly */
  int bad = 0;
  for (size_t k = 0; k < n; k++) {
    vt_write_file(tpath(p, sizeof p, "trunc.pt"), b, k);
    vlm_safetensors st;
    vlm_error_clear();
    if (vlm_torch_open(&st, p) == VLM_OK) {
      vlm_st_close(&st);
      bad++;
    } else if (!strstr(vlm_last_error(), p)) {
      bad++;
    }
  }
  CHECK(bad == 0, "every truncation of a %zu-byte archive fails naming the file (%d did not)", n, bad);
  free(b);
  free(pk.p);
}

/* Every byte of a real file flipped: open fails naming the file, or every entry is in bounds. */
static void test_flips(const char *name) {
  char src[4200], p[4200];
  size_t n = 0;
  uint8_t *b = vt_read_file(dpath(src, sizeof src, name), &n);
  CHECK(b != NULL, "read %s", src);
  if (!b) return;
  tpath(p, sizeof p, "flip.pt");
  int bad = 0, opened = 0;
  for (size_t k = 0; k < n; k++) {
    b[k] ^= 0xff;
    vt_write_file(p, b, n);
    b[k] ^= 0xff;
    vlm_safetensors st;
    vlm_error_clear();
    if (vlm_torch_open(&st, p) == VLM_OK) {
      opened++;
      if (!entries_sane(&st)) bad++;
      vlm_st_close(&st);
    } else if (!strstr(vlm_last_error(), p)) {
      bad++;
    }
  }
  CHECK(bad == 0, "%s: every byte flipped: %d bad outcomes (%d of %zu opened)", name, bad, opened, n);
  free(b);
}

int main(int argc, char **argv) {
  umask(022);
  g_shared = vt_shared_dir(argc, argv);
  const char *tmp = getenv("TMPDIR");
  snprintf(g_dir, sizeof g_dir, "%s/vlm-torch-test-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 1;
  }
  char probe[4200];
  struct stat sb;
  if (stat(dpath(probe, sizeof probe, "dtypes.pt"), &sb) != 0) {
    fprintf(stderr, "FAIL: %s missing (the test data of tests/data/torch)\n", probe);
    return 1;
  }
  test_dtypes();
  test_checkpoint();
  test_script();
  test_proto4();
  test_refused();
  test_write();
  test_crafted_pickles();
  test_crafted_zips();
  test_flips("dtypes.pt");
  test_flips("script.pt");
  vt_rm_tree(g_dir);
  return vt_finish();
}
