/* Tensors, arenas, dtypes, RNG, errors. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

static void test_dtypes(void) {
  CHECK(vlm_dtype_size(VLM_F32) == 4 && vlm_dtype_size(VLM_BF16) == 2 && vlm_dtype_size(VLM_I64) == 8,
        "dtype sizes");
  vlm_dtype dt;
  CHECK(vlm_dtype_from_name("BF16", &dt) && dt == VLM_BF16, "BF16 by name");
  CHECK(!vlm_dtype_from_name("F8", &dt), "unknown dtype name rejected");
  /* bf16: exact for representable values, round-to-nearest-even otherwise. */
  CHECK(vlm_bf16_to_f32(vlm_f32_to_bf16(1.5f)) == 1.5f, "bf16 exact");
  CHECK(vlm_f32_to_bf16(1.0f + 1.0f / 256) == 0x3f80, "bf16 ties to even (down)");
  CHECK(vlm_f32_to_bf16(1.0f + 3.0f / 256) == 0x3f82, "bf16 ties to even (up)");
  CHECK(isnan(vlm_bf16_to_f32(vlm_f32_to_bf16(NAN))), "bf16 NaN");
  /* f16 round trip over every half value. */
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = vlm_f16_to_f32((uint16_t)h);
    if (isnan(f)) continue;
    if (vlm_f32_to_f16(f) != h) bad++;
  }
  CHECK(bad == 0, "f16 round trip: %d mismatches", bad);
  CHECK(vlm_f16_to_f32(0x3c00) == 1.0f && vlm_f16_to_f32(0xc000) == -2.0f, "f16 values");
  CHECK(vlm_f32_to_f16(65520.0f) == 0x7c00, "f16 overflow to inf");
}

static void test_tensor_arena(void) {
  vlm_arena m;
  vlm_arena_measure(&m, VLM_CPU);
  vlm_arena_tensor2(&m, VLM_F32, 3, 5);
  vlm_arena_tensor1(&m, VLM_BF16, 7);
  size_t need = m.used;
  CHECK(need >= 64 + 14 && need % 2 == 0, "measured %zu bytes", need);
  vlm_arena a;
  CHECK(vlm_arena_init(&a, need, VLM_CPU) == VLM_OK, "arena init");
  vlm_tensor t = vlm_arena_tensor2(&a, VLM_F32, 3, 5);
  vlm_tensor u = vlm_arena_tensor1(&a, VLM_BF16, 7);
  CHECK(a.used == need, "same layout twice");
  CHECK(((uintptr_t)u.data % VLM_ARENA_ALIGN) == 0, "aligned");
  CHECK(vlm_numel(&t) == 15 && vlm_rows(&t) == 3 && vlm_cols(&t) == 5, "shape helpers");
  float *p = vlm_f32(&t);
  for (int i = 0; i < 15; i++) CHECK(p[i] == 0.0f, "zeroed");
  vlm_fill(&t, 2.5f);
  vlm_tensor col = vlm_narrow(&t, 1, 1, 2);
  CHECK(!vlm_is_contiguous(&col) && col.stride[0] == 5 && ((float *)col.data) == p + 1, "narrow view");
  vlm_tensor row = vlm_narrow(&t, 0, 1, 1);
  CHECK(vlm_is_contiguous(&row), "row view is contiguous");
  int64_t s1[1] = {15};
  vlm_tensor flat = vlm_reshape(&t, 1, s1);
  CHECK(flat.data == t.data && flat.shape[0] == 15, "reshape");
  vlm_tensor u7 = vlm_narrow(&flat, 0, 0, 7);
  vlm_copy(&u, &u7);
  CHECK(vlm_bf16_to_f32(((uint16_t *)u.data)[6]) == 2.5f, "copy F32 -> BF16");
  char buf[64];
  CHECK(!strcmp(vlm_shape_str(&t, buf, sizeof buf), "[3, 5] F32"), "shape_str %s", buf);
  vlm_arena_free(&a);
  /* Sizes that overflow 64 bits saturate a measuring arena; init then fails. */
  vlm_arena_measure(&m, VLM_CPU);
  vlm_arena_tensor2(&m, VLM_F32, 3, 5);
  vlm_arena_tensor2(&m, VLM_F32, (int64_t)1 << 40, (int64_t)1 << 30);
  CHECK(m.used == SIZE_MAX, "overflowing shape: used %zu", m.used);
  vlm_arena_tensor1(&m, VLM_F32, 4);
  CHECK(m.used == SIZE_MAX, "stays saturated");
  vlm_arena_measure(&m, VLM_CPU);
  for (int k = 0; k < 3; k++) vlm_arena_tensor1(&m, VLM_F32, (int64_t)1 << 60);   /* 2^62 bytes each */
  CHECK(m.used == 3 * ((size_t)1 << 62), "three of 2^62 bytes: used %zu", m.used);
  vlm_arena_tensor1(&m, VLM_F32, (int64_t)1 << 60);   /* the fourth overflows the sum */
  CHECK(m.used == SIZE_MAX, "overflowing sum: used %zu", m.used);
  CHECK(vlm_arena_init(&a, m.used, VLM_CPU) != VLM_OK && strstr(vlm_last_error(), "overflows"), "init: %s",
        vlm_last_error());
  /* Large host blocks (anonymous mappings, zero-filled by the kernel): zeroed, aligned, usable to
   * the last byte, and freed; a zero-byte one too. */
  for (int round = 0; round < 3; round++) {
    size_t big = ((size_t)5 << 20) + 4096 * (size_t)round + 8;
    uint8_t *b = vlm_device_alloc(VLM_CPU, big);
    CHECK(b && (uintptr_t)b % VLM_ARENA_ALIGN == 0, "host block of %zu bytes", big);
    if (!b) break;
    size_t nz = 0;
    for (size_t i = 0; i < big; i += 4093) nz += b[i] != 0;
    nz += b[big - 1] != 0;
    CHECK(nz == 0, "host block zeroed (%zu nonzero bytes)", nz);
    memset(b, 0xab, big);
    CHECK(b[big - 1] == 0xab, "host block writable to its end");
    vlm_device_free(VLM_CPU, b);
  }
  void *z = vlm_device_alloc(VLM_CPU, 0);
  CHECK(z != NULL, "zero-byte host block");
  vlm_device_free(VLM_CPU, z);
  vlm_device_free(VLM_CPU, NULL);
}

static void test_rng(void) {
  vlm_rng a, b;
  vlm_rng_seed(&a, 42);
  vlm_rng_seed(&b, 42);
  int same = 1;
  for (int i = 0; i < 100; i++) same &= vlm_rng_u64(&a) == vlm_rng_u64(&b);
  CHECK(same, "same seed, same stream");
  vlm_rng_seed(&b, 43);
  CHECK(vlm_rng_u64(&a) != vlm_rng_u64(&b), "different seeds differ");
  /* Moments of the normal generator. */
  double s = 0, s2 = 0;
  int n = 200000;
  for (int i = 0; i < n; i++) {
    double x = vlm_rng_normal(&a);
    s += x;
    s2 += x * x;
  }
  CHECK(fabs(s / n) < 0.01 && fabs(s2 / n - 1) < 0.02, "normal mean %g var %g", s / n, s2 / n);
  int counts[7] = {0};
  for (int i = 0; i < 70000; i++) counts[vlm_rng_below(&a, 7)]++;
  int ok = 1;
  for (int i = 0; i < 7; i++) ok &= abs(counts[i] - 10000) < 500;
  CHECK(ok, "below(7) roughly uniform");
  vlm_rng_seed_stream(&a, 1, 5);
  vlm_rng_seed_stream(&b, 1, 6);
  CHECK(vlm_rng_u64(&a) != vlm_rng_u64(&b), "streams differ");
  int64_t perm[10];
  for (int i = 0; i < 10; i++) perm[i] = i;
  vlm_rng_shuffle(&a, perm, 10);
  int seen = 0;
  for (int i = 0; i < 10; i++) seen |= 1 << perm[i];
  CHECK(seen == 0x3ff, "shuffle is a permutation");
}

static void *long_error_thread(void *msg) {
  vlm_error(VLM_ERR_FORMAT, "%s", (const char *)msg);
  return NULL;
}

static void test_errors(void) {
  vlm_status s = vlm_error(VLM_ERR_FORMAT, "%s: bad header", "x.safetensors");
  CHECK(s == VLM_ERR_FORMAT, "status returned");
  vlm_error_prefix(s, "loading model");
  CHECK(!strcmp(vlm_last_error(), "loading model: x.safetensors: bad header"), "%s", vlm_last_error());
  /* a message longer than VLM_ERR_LEN is kept whole; one may quote the last message itself */
  char *big = malloc(3 * VLM_ERR_LEN);
  if (big) {
    memset(big, 'a', 3 * VLM_ERR_LEN - 2);
    big[3 * VLM_ERR_LEN - 2] = 'z';
    big[3 * VLM_ERR_LEN - 1] = 0;
    vlm_error(VLM_ERR_FORMAT, "%s", big);
    CHECK(strlen(vlm_last_error()) == 3 * VLM_ERR_LEN - 1 && vlm_last_error()[3 * VLM_ERR_LEN - 2] == 'z',
          "a long message kept whole: %zu bytes", strlen(vlm_last_error()));
    vlm_error_prefix(VLM_ERR_FORMAT, "ctx");
    CHECK(!strncmp(vlm_last_error(), "ctx: aaa", 8) && strlen(vlm_last_error()) == 3 * VLM_ERR_LEN + 4,
          "a long message prefixed: %zu bytes", strlen(vlm_last_error()));
    vlm_error(VLM_ERR_FORMAT, "short");
    vlm_error(VLM_ERR_FORMAT, "%s and %s", vlm_last_error(), vlm_last_error());
    CHECK(!strcmp(vlm_last_error(), "short and short"), "a message quoting the last one: %s", vlm_last_error());
    vlm_error(VLM_ERR_FORMAT, "%s", big);
    vlm_error(VLM_ERR_FORMAT, "x%s", vlm_last_error());
    CHECK(strlen(vlm_last_error()) == 3 * VLM_ERR_LEN && vlm_last_error()[0] == 'x',
          "a long message quoting the last long one: %zu bytes", strlen(vlm_last_error()));
    /* a thread's long message is freed when the thread ends (LeakSanitizer checks) */
    pthread_t th;
    CHECK(pthread_create(&th, NULL, long_error_thread, big) == 0 && pthread_join(th, NULL) == 0, "error thread");
    free(big);
  }
  vlm_error_clear();
  CHECK(!strcmp(vlm_last_error(), "no error"), "cleared: %s", vlm_last_error());
  CHECK(vlm_threads_init(1) == 1 && vlm_threads_get() == 1, "threads");
  vlm_threads_init(0);
  /* shell words for the commands messages quote */
  char b[64];
  static const char *const cases[][2] = {
      {"runs/a-b_c.pt", "runs/a-b_c.pt"},         {"my model/x.pt", "'my model/x.pt'"},
      {"it's", "'it'\\''s'"},                     {"", "''"},
      {"~/x", "'~/x'"},                           {"a$b`c\"d", "'a$b`c\"d'"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *w = vlm_shell_word(cases[i][0], b, sizeof b);
    CHECK(!strcmp(w, cases[i][1]), "shell word of [%s]: [%s], want [%s]", cases[i][0], w, cases[i][1]);
  }
  /* vlm_hash: the same bytes the same value; a run's length counts; one bit anywhere changes it */
  vlm_hash h1, h2, h3;
  vlm_hash_init(&h1);
  vlm_hash_init(&h2);
  vlm_hash_init(&h3);
  uint8_t buf[100];
  for (int i = 0; i < 100; i++) buf[i] = (uint8_t)(i * 7);
  vlm_hash_bytes(&h1, buf, 100);
  vlm_hash_bytes(&h2, buf, 40);
  vlm_hash_bytes(&h2, buf + 40, 60);
  vlm_hash_bytes(&h3, buf, 100);
  CHECK(vlm_hash_final(&h1) == vlm_hash_final(&h3), "vlm_hash: the same bytes, the same value");
  CHECK(vlm_hash_final(&h1) != vlm_hash_final(&h2), "vlm_hash: 100 bytes as one run or as 40 + 60 differ");
  for (int at = 0; at < 100; at += 33) {
    vlm_hash_init(&h3);
    buf[at] ^= 1;
    vlm_hash_bytes(&h3, buf, 100);
    buf[at] ^= 1;
    CHECK(vlm_hash_final(&h1) != vlm_hash_final(&h3), "vlm_hash: a bit of byte %d changes it", at);
  }
  char small[6];
  CHECK(!strcmp(vlm_shell_word("a b c d", small, sizeof small), "a b c d"), "a word that does not fit: unquoted");
  CHECK(!strcmp(vlm_shell_word("a b", small, sizeof small), "'a b'"), "a word that just fits: quoted");
}

static void test_scratch(void) {
  char *a = vlm_scratch(0, 100);
  memset(a, 1, 100);
  CHECK(((uintptr_t)a % VLM_ARENA_ALIGN) == 0, "scratch aligned");
  CHECK(vlm_scratch(0, 50) == (void *)a, "a smaller request reuses the buffer");
  char *b = vlm_scratch(1, 10);
  CHECK(b != a, "slots are distinct");
  char *c = vlm_scratch(0, 1 << 20);
  memset(c, 2, 1 << 20);
  CHECK(vlm_scratch(0, 1 << 19) == (void *)c, "grown buffer is kept");
  vlm_scratch_release();
}

/* vlm_copy_rows: blocks of rows between [rows, W] views, a step of 0 repeating
 * one block; a block past either tensor's end aborts. */
typedef struct { vlm_tensor *d, *s; int64_t d0, ds, s0, ss, n, per; } rows_args;
static void copy_rows_call(void *ctx) {
  rows_args *a = ctx;
  vlm_copy_rows(a->d, a->d0, a->ds, a->s, a->s0, a->ss, a->n, a->per);
}

static void test_copy_rows(void) {
  enum { W = 3 };
  float src[6 * W], dst[10 * W];
  for (int i = 0; i < 6 * W; i++) src[i] = (float)(100 + i);
  int64_t ssh[2] = {6, W}, dsh[3] = {2, 5, W}, one[1] = {W};
  vlm_tensor s = vlm_tensor_cpu_f32(src, 2, ssh), d = vlm_tensor_cpu_f32(dst, 3, dsh);
  /* the interleave of the text tower's cls: per batch entry 2 token rows then the
   * cls row, here 2 entries of 5 rows: rows 0-1 and 5-6 from src rows 0-1 and 2-3 */
  for (int i = 0; i < 10 * W; i++) dst[i] = -1;
  vlm_copy_rows(&d, 0, 5, &s, 0, 2, 2, 2);
  vlm_tensor cls = vlm_tensor_cpu_f32(src + 5 * W, 1, one);   /* one row, repeated (step 0) */
  vlm_copy_rows(&d, 2, 5, &cls, 0, 0, 2, 1);
  const int from[10] = {0, 1, 5, -1, -1, 2, 3, 5, -1, -1};
  int bad = 0;
  for (int r = 0; r < 10; r++)
    for (int w = 0; w < W; w++) bad += dst[r * W + w] != (from[r] < 0 ? -1.0f : (float)(100 + from[r] * W + w));
  CHECK(bad == 0, "copy_rows: %d elements wrong", bad);
  vlm_copy_rows(&d, 0, 5, &s, 0, 2, 0, 2);   /* n = 0: nothing */
  rows_args past = {&d, &s, 0, 5, 0, 2, 3, 2};          /* a third block at dst row 10 */
  vt_expect_abort("copy_rows past the destination", copy_rows_call, &past, "vlm_copy_rows", "overrun");
  rows_args src_past = {&d, &s, 0, 1, 5, 0, 1, 2};      /* src rows 5-6 of 6 */
  vt_expect_abort("copy_rows past the source", copy_rows_call, &src_past, "vlm_copy_rows", "overrun");
  rows_args huge = {&d, &s, 0, INT64_MAX / 2, 0, 0, 3, 1};
  vt_expect_abort("copy_rows with an overflowing step", copy_rows_call, &huge, "vlm_copy_rows", "overrun");
  int64_t wsh[2] = {2, 9};
  vlm_tensor wide = vlm_tensor_cpu_f32(dst, 2, wsh);
  rows_args widths = {&wide, &s, 0, 1, 0, 1, 1, 1};
  vt_expect_abort("copy_rows between different widths", copy_rows_call, &widths, "vlm_copy_rows", "floats");
}

/* vlm_host_view / _stage / _commit on the CPU: no copies (test_cuda_ops: a GPU). */
static void test_host_access(void) {
  int64_t ids[6] = {1, 2, 3, 4, 5, 6}, sh[2] = {2, 3};
  vlm_tensor t = vlm_tensor_make(ids, VLM_I64, VLM_CPU, 2, sh);
  void *owned = (void *)1;
  vlm_tensor h = vlm_host_view(&t, &owned);
  CHECK(h.data == ids && h.device == VLM_CPU && owned == NULL, "host view of a CPU tensor is the tensor itself");
  int64_t *st = vlm_host_stage(&t, 4 * sizeof(int64_t));
  CHECK(st == ids, "staging a CPU tensor gives its own memory");
  st[0] = 9;
  vlm_host_commit(&t, st, 4 * sizeof(int64_t));
  CHECK(ids[0] == 9, "commit on the CPU leaves the write in place");
}

/* The OpenMP spin the `vlm` command picks: short when others and its threads outnumber the CPUs. */
static void test_spin_choice(void) {
  CHECK(vlm_omp_spin_count(0, 2, 2) == VLM_SPIN_IDLE, "idle 2-core machine, 2 threads");
  CHECK(vlm_omp_spin_count(1, 2, 2) == VLM_SPIN_BUSY, "one other task, 2 threads on 2 cores");
  CHECK(vlm_omp_spin_count(1, 1, 2) == VLM_SPIN_IDLE, "one other task, 1 thread on 2 cores");
  CHECK(vlm_omp_spin_count(14, 2, 16) == VLM_SPIN_IDLE, "14 others, 2 threads, 16 cores");
  CHECK(vlm_omp_spin_count(15, 2, 16) == VLM_SPIN_BUSY, "15 others, 2 threads, 16 cores");
  CHECK(vlm_omp_spin_count(-1, 64, 2) == VLM_SPIN_IDLE, "unknown load: the long spin, as before");
  CHECK(vlm_omp_spin_count(3, 2, 0) == VLM_SPIN_IDLE, "unknown CPU count");
  /* /proc/stat on Linux: a count, the reader itself not included */
  int others = vlm_runnable_others();
  CHECK(others >= 0, "vlm_runnable_others read /proc/stat (got %d)", others);
}

int main(void) {
  test_spin_choice();
  test_scratch();
  test_dtypes();
  test_tensor_arena();
  test_rng();
  test_errors();
  test_copy_rows();
  test_host_access();
  return vt_finish();
}
