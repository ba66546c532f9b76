/* The C API (libvlm.so, include/vlm.h only) on models with a tokenizer, which
 * tests/e2e/capi.sh makes:
 *   test_capi_models CLIP COCA LONG_CLIP BROKEN_PNG WORK_DIR IMAGE...
 * CLIP and COCA are model directories with tokenizer/, LONG_CLIP a copy of CLIP at
 * a path over 1024 bytes long with a corrupt broken.png inside, BROKEN_PNG a corrupt
 * PNG at a short path, WORK_DIR a writable folder, IMAGE... test photos. Checks:
 *   - the error contract: "" until something fails; a failed call's message stays
 *     (and the pointer load gave) through later successful calls;
 *   - vlm_classifier_new validates every template (NULL, empty, no {} / {c});
 *   - the matmul precision is per model: loading and using a bf16 model leaves an
 *     f32 model's embeddings bit-identical (in this thread and another), and the
 *     bf16 model keeps bf16 after an f32 model ran;
 *   - long paths: the tokenizer beside a model at a long path is found, and an
 *     unreadable image's error keeps the whole path and the reason;
 *   - vlm_caption: a cut to fit out_size ends at a UTF-8 character boundary, returns
 *     0, and is a prefix of the whole caption; a model loaded on "cuda" captions (the
 *     emulated GPU of build-emu, or a real one) as the CPU does; a bf16 CoCa leaves an
 *     f32 CoCa's captions unchanged;
 *   - messages name the API's options, not the vlm command's flags. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vlm.h>

#include "capi_check.h"


static int utf8_valid(const unsigned char *s) {
  while (*s) {
    int n = *s < 0x80 ? 0 : (*s >> 5) == 6 ? 1 : (*s >> 4) == 14 ? 2 : (*s >> 3) == 30 ? 3 : -1;
    if (n < 0) return 0;
    s++;
    for (int i = 0; i < n; i++, s++)
      if ((*s >> 6) != 2) return 0;
  }
  return 1;
}

static int has_multibyte(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s >= 0x80) return 1;
  return 0;
}

/* ---- a PNG header claiming 10000 x 10000 pixels (over the API's limit, PIL's 89,478,485) */
static uint32_t crc32_bytes(const unsigned char *p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
  }
  return c ^ 0xFFFFFFFFu;
}
static void put32(unsigned char *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static int write_huge_png(const char *path) {
  unsigned char f[8 + 25 + 12] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  unsigned char *c = f + 8;
  put32(c, 13);
  memcpy(c + 4, "IHDR", 4);
  put32(c + 8, 10000);
  put32(c + 12, 10000);
  c[16] = 8; c[17] = 2; c[18] = 0; c[19] = 0; c[20] = 0;   /* 8-bit RGB */
  put32(c + 21, crc32_bytes(c + 4, 17));
  unsigned char *e = c + 25;
  put32(e, 0);
  memcpy(e + 4, "IEND", 4);
  put32(e + 8, crc32_bytes(e + 4, 4));
  FILE *fp = fopen(path, "wb");
  if (!fp) return -1;
  size_t w = fwrite(f, 1, sizeof f, fp);
  return fclose(fp) == 0 && w == sizeof f ? 0 : -1;
}

/* ---- embeddings of a fixed input set: 2 images and 2 texts */
typedef struct {
  vlm_model *m;
  const char *const *images;
  float *out;   /* [4, E] */
  int rc;
} embed_job;

static const char *const k_texts[2] = {"a photo of a horse in a field", "an old camera on a table"};

static void *embed_run(void *arg) {
  embed_job *j = arg;
  int E = vlm_model_embed_dim(j->m);
  j->rc = vlm_embed_image_files(j->m, j->images, 2, j->out) || vlm_embed_texts(j->m, k_texts, 2, j->out + 2 * E);
  return NULL;
}

static float *embed4(vlm_model *m, const char *const *images) {
  float *out = calloc(4 * (size_t)vlm_model_embed_dim(m), sizeof(float));
  embed_job j = {m, images, out, 0};
  embed_run(&j);
  CHECK(j.rc == 0, "embed: %s", vlm_get_last_error());
  return out;
}

/* The same on a new thread (its matmul precision starts at the library's default). */
static float *embed4_thread(vlm_model *m, const char *const *images) {
  float *out = calloc(4 * (size_t)vlm_model_embed_dim(m), sizeof(float));
  embed_job j = {m, images, out, 0};
  pthread_t th;
  CHECK(pthread_create(&th, NULL, embed_run, &j) == 0, "pthread_create");
  pthread_join(th, NULL);
  CHECK(j.rc == 0, "embed on a thread failed");
  return out;
}


/* vlm_model_options.threads on a thread that did not load the model: the OpenMP workers a
 * call started for this thread (none when it ran on one thread; libgomp keeps a team per
 * thread that starts parallel regions), and the thread's own OpenMP count before and after
 * the call (the call gives it back). */
typedef struct { vlm_model *m; int before, after, started, rc; } threads_job;
static void *threads_run(void *arg) {
  threads_job *j = arg;
  float *out = calloc((size_t)vlm_model_embed_dim(j->m), sizeof(float));
  j->before = omp_get_max_threads();
  int n0 = process_threads();
  j->rc = out ? vlm_embed_texts(j->m, k_texts, 1, out) : -1;
  j->started = n0 < 0 ? 0 : process_threads() - n0;
  j->after = omp_get_max_threads();
  free(out);
  return NULL;
}

static void *last_error_of_new_thread(void *arg) {
  *(const char **)arg = vlm_get_last_error();
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 8) {
    fprintf(stderr, "usage: test_capi_models CLIP COCA LONG_CLIP BROKEN_PNG WORK_DIR IMAGE IMAGE...\n");
    return 2;
  }
  const char *clip = argv[1], *coca = argv[2], *long_clip = argv[3], *broken = argv[4], *work = argv[5];
  const char *const *images = (const char *const *)argv + 6;
  int n_images = argc - 6;
  const char *err = NULL;

  /* ---- error contract */
  CHECK(!strcmp(vlm_get_last_error(), ""), "nothing failed yet: \"%s\" (vlm.h says \"\")", vlm_get_last_error());
  vlm_model *bad = vlm_model_load("/nonexistent/model-A", &err);
  CHECK(!bad && err && strstr(err, "model-A"), "a failed load names the path: %s", err ? err : "(null)");
  char saved[4096];
  snprintf(saved, sizeof saved, "%s", err ? err : "");
  vlm_model *A = vlm_model_load(clip, NULL);
  CHECK(A != NULL, "load %s: %s", clip, vlm_get_last_error());
  if (!A) return 1;
  CHECK(!strcmp(vlm_get_last_error(), saved) && err && !strcmp(err, saved),
        "a successful load keeps the last error: \"%s\", *err \"%s\", expected \"%s\"", vlm_get_last_error(),
        err ? err : "(null)", saved);
  const char *thread_err = NULL;
  pthread_t th;
  pthread_create(&th, NULL, last_error_of_new_thread, &thread_err);
  pthread_join(th, NULL);
  CHECK(thread_err && !strcmp(thread_err, ""), "a new thread's last error is \"\": \"%s\"", thread_err ? thread_err : "(null)");
  int E = vlm_model_embed_dim(A);
  float *tmp = malloc(4 * (size_t)E * sizeof(float));
  const char *missing = "/nonexistent/B.png";
  CHECK(vlm_embed_image_files(A, &missing, 1, tmp) == -1, "missing image");
  snprintf(saved, sizeof saved, "%s", vlm_get_last_error());
  CHECK(vlm_embed_texts(A, k_texts, 1, tmp) == 0 && !strcmp(vlm_get_last_error(), saved),
        "a successful call keeps the last error: \"%s\"", vlm_get_last_error());

  /* ---- templates */
  const char *cls[2] = {"horse", "camera"};
  const char *t_null[2] = {"a photo of a {}.", NULL}, *t_none[2] = {"a photo", "a {c}"}, *t_empty[1] = {""};
  const char *t_ok[2] = {"a photo of a {}.", "itap of my {c}"};
  vlm_classifier *c = vlm_classifier_new(A, cls, 2, NULL, t_null, 2);
  CHECK(!c && strstr(vlm_get_last_error(), "template 1 is NULL"), "NULL template: %s", vlm_get_last_error());
  c = vlm_classifier_new(A, cls, 2, NULL, t_none, 2);
  CHECK(!c && strstr(vlm_get_last_error(), "template 0") && strstr(vlm_get_last_error(), "no {} or {c}"),
        "template without a placeholder: %s", vlm_get_last_error());
  c = vlm_classifier_new(A, cls, 2, NULL, t_empty, 1);
  CHECK(!c && strstr(vlm_get_last_error(), "template 0"), "empty template: %s", vlm_get_last_error());
  c = vlm_classifier_new(A, cls, 2, NULL, t_ok, 2);
  CHECK(c && vlm_classifier_size(c) == 2, "valid templates: %s", vlm_get_last_error());
  vlm_classifier_free(c);

  /* ---- more texts than a batch, of mixed lengths (taken shortest first): each row is the one its
   * text gets alone, in the order given */
  vlm_model_options ob2 = {0};
  ob2.batch_size = 2;
  vlm_model *S2 = vlm_model_load_ex(clip, &ob2, &err);
  CHECK(S2 != NULL, "load with batch_size = 2: %s", S2 ? "" : err);
  if (S2) {
    const char *mixed[5] = {"a very long caption about a small red boat on a lake near some tall green trees", "sky",
                            "an old camera on a wooden table", "two cats", "a horse in a field of yellow flowers"};
    float *all = malloc(5 * (size_t)E * sizeof(float)), *one = malloc((size_t)E * sizeof(float));
    CHECK(all && one && vlm_embed_texts(S2, mixed, 5, all) == 0, "5 texts at batch 2: %s", vlm_get_last_error());
    for (int i = 0; all && one && i < 5; i++) {
      CHECK(vlm_embed_texts(S2, mixed + i, 1, one) == 0, "text %d alone: %s", i, vlm_get_last_error());
      float d = 0;
      for (int k = 0; k < E; k++) d = fmaxf(d, fabsf(one[k] - all[(size_t)i * E + k]));
      CHECK(d < 1e-5f, "text %d: its row differs from its own embedding by %g", i, d);
    }
    free(all);
    free(one);
    vlm_model_free(S2);
  }

  /* ---- options.threads holds on every thread that calls the model, not only the loading one */
  vlm_model_options o1 = {0};
  o1.threads = 1;
  vlm_model *T1 = vlm_model_load_ex(clip, &o1, &err);
  CHECK(T1 != NULL, "load with threads = 1: %s", T1 ? "" : err);
  if (T1) {
    threads_job tj = {T1, -1, -1, -1, -1};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, threads_run, &tj) == 0, "pthread_create");
    pthread_join(th, NULL);
    CHECK(tj.rc == 0 && tj.started == 0,
          "a call from another thread started %d OpenMP workers, not none (options.threads 1)", tj.started);
    CHECK(tj.after == tj.before, "the calling thread's OpenMP count went from %d to %d", tj.before, tj.after);
    vlm_model_free(T1);
  }

  /* ---- matmul precision per model: A (f32), B (bf16), C (f32) in one process */
  float *a0 = embed4(A, images);   /* before any bf16 model existed */
  vlm_model_options ob = {0};
  ob.bf16 = 1;
  vlm_model *B = vlm_model_load_ex(clip, &ob, &err);
  CHECK(B != NULL, "load bf16: %s", B ? "" : err);
  if (!B) return 1;
  float *b0 = embed4(B, images);
  float *a1 = embed4(A, images);
  vlm_model *C = vlm_model_load(clip, &err);
  CHECK(C != NULL, "load C: %s", C ? "" : err);
  if (!C) return 1;
  float *c1 = embed4(C, images), *b1 = embed4(B, images), *a2 = embed4_thread(A, images), *b2 = embed4_thread(B, images);
  size_t bytes = 4 * (size_t)E * sizeof(float);
  CHECK(!memcmp(a0, a1, bytes), "f32 model A changed after a bf16 model was loaded and used");
  CHECK(!memcmp(a0, c1, bytes), "f32 model C (loaded after the bf16 one) differs from A before it");
  CHECK(!memcmp(a0, a2, bytes), "f32 model A on another thread differs");
  CHECK(memcmp(a0, b0, bytes) != 0, "the bf16 model computes the f32 model's bits: bf16 was not applied");
  CHECK(!memcmp(b0, b1, bytes), "the bf16 model changed after an f32 model ran");
  CHECK(!memcmp(b0, b2, bytes), "the bf16 model on another thread differs");
  double d = 0;
  for (int i = 0; i < 4 * E; i++) d = fmax(d, fabs(a0[i] - b0[i]));
  printf("precision per model: f32 embeddings bit-identical around a bf16 model (bf16 vs f32: max |diff| %.3g)\n", d);
  free(a1); free(b0); free(c1); free(b1); free(a2); free(b2);
  vlm_model_free(B);
  vlm_model_free(C);

  /* ---- long paths */
  CHECK(strlen(long_clip) > 1024, "LONG_CLIP is only %zu bytes", strlen(long_clip));
  vlm_model *L = vlm_model_load(long_clip, &err);
  CHECK(L != NULL, "load at a long path: %s", L ? "" : err);
  if (L) {
    CHECK(vlm_model_has_tokenizer(L), "the tokenizer beside a model at a %zu-byte path is found", strlen(long_clip));
    CHECK(!strcmp(vlm_model_identity(L), vlm_model_identity(A)), "the same identity");
    float *l0 = embed4(L, images);
    CHECK(!memcmp(l0, a0, bytes), "the same embeddings");
    free(l0);
    char lbroken[8192];
    snprintf(lbroken, sizeof lbroken, "%s/broken.png", long_clip);
    const char *lb = lbroken;
    CHECK(vlm_embed_image_files(A, &broken, 1, tmp) == -1, "broken image refused");
    char short_msg[4096];
    snprintf(short_msg, sizeof short_msg, "%s", vlm_get_last_error());
    CHECK(vlm_embed_image_files(L, &lb, 1, tmp) == -1, "broken image at a long path refused");
    const char *m = vlm_get_last_error(), *ps = strstr(short_msg, broken), *pl = strstr(m, lbroken);
    CHECK(ps && pl && !strcmp(ps + strlen(broken), pl + strlen(lbroken)),
          "the long path's message keeps the path and the reason: \"...%s\" vs \"...%s\"",
          pl ? pl + strlen(lbroken) : "(path cut)", ps ? ps + strlen(broken) : "?");
    vlm_model_free(L);
  }
  char *huge_tok = malloc(5001);
  memset(huge_tok, 'x', 5000);
  huge_tok[0] = '/';
  huge_tok[5000] = 0;
  vlm_model_options ot = {0};
  ot.tokenizer = huge_tok;
  CHECK(!vlm_model_load_ex(clip, &ot, &err) && strstr(err, "5000 bytes long"), "a 5000-byte tokenizer path: %.200s",
        err);
  free(huge_tok);

  /* ---- messages for the API's caller */
  char huge[4096];
  snprintf(huge, sizeof huge, "%s/huge.png", work);
  CHECK(write_huge_png(huge) == 0, "write %s", huge);
  const char *hp = huge;
  CHECK(vlm_embed_image_files(A, &hp, 1, tmp) == -1 && strstr(vlm_get_last_error(), "max-pixels") &&
            !strstr(vlm_get_last_error(), "--"),
        "over the pixel limit, no CLI flag named: %s", vlm_get_last_error());
  vlm_model *G = vlm_model_load_on(clip, NULL, "cuda", &err);
  if (!G) CHECK(!strstr(err, "--device") && strstr(err, "cuda"), "no GPU, said for the API: %s", err);
  vlm_model_free(G);

  /* ---- captions */
  vlm_model *K = vlm_model_load(coca, &err);
  CHECK(K != NULL, "load %s: %s", coca, K ? "" : err);
  if (!K) return 1;
  char (*caps)[1024] = calloc((size_t)n_images, sizeof *caps);
  int n_cap = 0, mb = -1;   /* caption 3 images, or up to the first with a multibyte character */
  while (n_cap < n_images && (mb < 0 || n_cap < 3)) {
    int i = n_cap++, rc = vlm_caption(K, images[i], caps[i], sizeof caps[i]);
    CHECK(rc == 0, "caption %s: rc %d %s", images[i], rc, vlm_get_last_error());
    if (mb < 0 && has_multibyte(caps[i])) mb = i;
  }
  CHECK(mb >= 0, "no caption with a multibyte character to check the cuts on");
  if (mb >= 0) {
    const char *full = caps[mb];
    size_t n = strlen(full), sizes[16], ns = 0;
    CHECK(utf8_valid((const unsigned char *)full), "the caption of %s is valid UTF-8", images[mb]);
    sizes[ns++] = 1;
    for (size_t p = 0, chars = 0; p < n && chars < 2; p++) {   /* every cut in and after 2 multibyte characters */
      if ((unsigned char)full[p] < 0xC0) continue;
      size_t len = 1;
      while (((unsigned char)full[p + len] & 0xC0) == 0x80) len++;
      for (size_t c = 1; c <= len + 1; c++) sizes[ns++] = p + c;
      chars++;
    }
    sizes[ns++] = n;
    sizes[ns++] = n + 1;
    for (size_t j = 0; j < ns; j++) {
      size_t size = sizes[j], want = size - 1 < n ? size - 1 : n;
      while (want > 0 && want < n && ((unsigned char)full[want] & 0xC0) == 0x80) want--;
      char out[1024];
      memset(out, 'z', sizeof out);
      int rc = vlm_caption(K, images[mb], out, size);
      size_t k = strnlen(out, size);
      CHECK(k < size && rc == 0, "out_size %zu of %zu: rc %d (0, cut or not), length %zu", size, n + 1,
            rc, k);
      CHECK(k == want && !strncmp(out, full, k) && utf8_valid((const unsigned char *)out),
            "out_size %zu: \"%s\" is not the longest whole-character prefix of \"%s\" (%zu bytes)", size, out, full,
            want);
    }
    printf("caption cuts at %zu sizes around multibyte characters of \"%s\"\n", ns, full);
  }
  vlm_model *KB = vlm_model_load_ex(coca, &ob, &err);
  CHECK(KB != NULL, "load CoCa bf16: %s", KB ? "" : err);
  char cap[1024];
  CHECK(KB && vlm_caption(KB, images[0], cap, sizeof cap) == 0, "bf16 caption: %s", vlm_get_last_error());
  for (int i = 0; i < n_cap; i++)
    CHECK(vlm_caption(K, images[i], cap, sizeof cap) == 0 && !strcmp(cap, caps[i]),
          "f32 caption of %s changed after a bf16 CoCa ran: \"%s\" vs \"%s\"", images[i], cap, caps[i]);
  vlm_model_free(KB);
  vlm_model *KG = vlm_model_load_on(coca, NULL, "cuda", &err);
  if (!KG) {
    printf("vlm_model_load_on(cuda): %s (captions on the device not checked)\n", err);
  } else {
    for (int i = 0; i < n_cap; i++) {
      int rc = vlm_caption(KG, images[i], cap, sizeof cap);
      CHECK(rc == 0 && !strcmp(cap, caps[i]), "caption on cuda of %s: rc %d \"%s\" (CPU \"%s\") %s", images[i], rc,
            cap, caps[i], rc ? vlm_get_last_error() : "");
    }
    printf("captions on the device equal the CPU's (%d images)\n", n_cap);
    vlm_model_free(KG);
  }
  vlm_model_free(K);
  free(caps);
  free(a0);
  free(tmp);
  vlm_model_free(A);
  printf("%s\n", g_fail ? "FAILED" : "ok");
  return g_fail ? 1 : 0;
}
