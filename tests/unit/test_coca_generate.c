/* CoCa caption generation: the KV-cached decoder gives the same tokens as the
 * uncached one (the whole prefix through the parity-tested model every step)
 * for greedy, beam search and sampling; lengths, EOT and the processors.
 * argv[1]: the ../shared folder (uses fixtures/tiny-coca). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gradcheck.h"
#include "model/model.h"

static vlm_coca_config C;
static vlm_coca_params P;
static vlm_tensor IMAGES;

static void gen(const vlm_gen_options *o, int32_t *out, int *lens, const char *what) {
  vlm_status s = vlm_coca_generate(&C, &P, &IMAGES, o, out, lens);
  CHECK(s == VLM_OK, "%s: %s", what, vlm_last_error());
}

/* Cached and uncached: identical tokens and lengths. Returns the tokens (malloc'd). */
static int32_t *same_both_ways(vlm_gen_options o, const char *what, int **lens_out) {
  int64_t B = IMAGES.shape[0], L = o.max_len;
  int32_t *a = calloc((size_t)(B * L), sizeof *a), *b = calloc((size_t)(B * L), sizeof *b);
  int *la = calloc((size_t)B, sizeof *la), *lb = calloc((size_t)B, sizeof *lb);
  o.use_cache = 1;
  double t0 = vlm_now();
  gen(&o, a, la, what);
  double t1 = vlm_now();
  o.use_cache = 0;
  gen(&o, b, lb, what);
  double t2 = vlm_now();
  int same = !memcmp(a, b, (size_t)(B * L) * sizeof *a) && !memcmp(la, lb, (size_t)B * sizeof *la);
  CHECK(same, "%s: cached and uncached decoding differ", what);
  int64_t total = 0;
  for (int64_t i = 0; i < B; i++) total += la[i];
  printf("%s: identical (%lld tokens over %lld images; cached %.1f ms, uncached %.1f ms)\n", what, (long long)total,
         (long long)B, (t1 - t0) * 1e3, (t2 - t1) * 1e3);
  /* shape of every row: sot first, pad after the end, the end is EOT (or pad for greedy/sampling) */
  for (int64_t i = 0; i < B; i++) {
    const int32_t *r = a + i * L;
    CHECK(la[i] >= 2 && la[i] <= L && r[0] == o.sot_id, "%s: row %lld: length %d, first %d", what, (long long)i, la[i],
          r[0]);
    int end = r[la[i] - 1];
    /* beam search (HF's finalize) appends EOT only to hypotheses shorter than max_len */
    CHECK(end == o.eot_id || (o.beams == 1 && end == o.pad_id) || (o.beams > 1 && la[i] == L),
          "%s: row %lld ends with %d", what, (long long)i, end);
    for (int j = 1; j < la[i] - 1; j++) CHECK(r[j] != o.eot_id, "%s: row %lld: EOT inside", what, (long long)i);
    for (int64_t j = la[i]; j < L; j++) CHECK(r[j] == o.pad_id, "%s: row %lld: not padded after the end", what, (long long)i);
  }
  free(b);
  free(lb);
  if (lens_out) *lens_out = la;
  else free(la);
  return a;
}

/* Greedy tokens are the argmax of the teacher-forced model (vlm_coca_forward, the
 * parity-tested path) at every position, apart from the processors' effect. */
static void greedy_matches_forward(const vlm_gen_options *o, const int32_t *tok, const int *lens) {
  int64_t B = IMAGES.shape[0], L = o->max_len, V = C.decoder.vocab_size;
  vlm_coca_acts s;
  if (vlm_coca_acts_init(&s, &C, B, L, 0) != VLM_OK) {
    CHECK(0, "%s", vlm_last_error());
    return;
  }
  int64_t *ids = calloc((size_t)(B * L), sizeof *ids);
  for (int64_t i = 0; i < B * L; i++) ids[i] = tok[i];
  int64_t sh[2] = {B, L};
  vlm_tensor t = vlm_tensor_make(ids, VLM_I64, VLM_CPU, 2, sh);
  vlm_coca_forward(&C, &P, &s, &IMAGES, &t);
  int bad = 0, checked = 0;
  const float *lg = s.dec.logits.data;
  for (int64_t b = 0; b < B; b++)
    for (int64_t l = 0; l + 1 < lens[b] && l + 2 < L; l++) {
      const float *row = lg + (b * L + l) * V;
      int64_t best = -1;
      for (int64_t v = 0; v < V; v++) {
        if (l + 1 < o->min_len && v == o->eot_id) continue;
        if (best < 0 || row[v] > row[best]) best = v;
      }
      bad += best != tok[b * L + l + 1];
      checked++;
    }
  CHECK(bad == 0 && checked > 0, "greedy: %d of %d tokens are not the teacher-forced argmax", bad, checked);
  free(ids);
  vlm_coca_acts_free(&s);
}

int main(int argc, char **argv) {
  const char *shared = vt_shared_dir(argc, argv);
  if (!shared) vt_skip("no ../shared given");
  char dir[2048], path[4096];
  snprintf(dir, sizeof dir, "%s/fixtures/tiny-coca", shared);
  snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
  if (access(path, R_OK) != 0) vt_skip("fixtures/tiny-coca not found");
  vlm_safetensors in;
  if (vlm_coca_load(dir, &C, &P) != VLM_OK || vlm_st_open(&in, path) != VLM_OK) {
    CHECK(0, "%s", vlm_last_error());
    return vt_finish();
  }
  IMAGES = vlm_st_tensor(vlm_st_find(&in, "images"));
  IMAGES.shape[0] = IMAGES.shape[0] < 4 ? IMAGES.shape[0] : 4;   /* 4 images keep the test short */
  vlm_gen_options o;
  vlm_gen_options_default(&o);
  o.sot_id = C.text.vocab_size - 2;
  o.eot_id = C.text.vocab_size - 1;
  o.pad_id = 0;
  o.max_len = (int)C.text.context_length;
  o.min_len = 2;

  int *lens;
  int32_t *g = same_both_ways(o, "greedy", &lens);
  greedy_matches_forward(&o, g, lens);
  free(g);
  free(lens);

  vlm_gen_options b = o;
  b.beams = 3;
  free(same_both_ways(b, "beam search (3 beams)", NULL));
  b.beams = 4;
  b.length_penalty = 0.6f;
  b.repetition_penalty = 1.3f;
  free(same_both_ways(b, "beam search (4 beams, length penalty 0.6, repetition penalty 1.3)", NULL));

  vlm_gen_options s = o;
  s.top_k = 20;
  s.temperature = 0.8f;
  s.seed = 3;
  free(same_both_ways(s, "top-k 20, temperature 0.8", NULL));
  s.top_k = 0;
  s.top_p = 0.9f;
  s.repetition_penalty = 1.2f;
  free(same_both_ways(s, "top-p 0.9, repetition penalty 1.2", NULL));

  /* top-p 1 samples from the whole distribution (not greedy) */
  s.top_p = 1.0f;
  s.repetition_penalty = 1.0f;
  s.temperature = 1.0f;
  int32_t *full = same_both_ways(s, "top-p 1 (full distribution)", NULL);
  int *gl;
  int32_t *greedy = same_both_ways(o, "greedy again", &gl);
  CHECK(memcmp(full, greedy, (size_t)(IMAGES.shape[0] * o.max_len) * sizeof *full) != 0,
        "top-p 1 sampling gave the greedy tokens");
  free(full);
  free(greedy);
  free(gl);

  /* min_len = max_len: EOT is forbidden until the forced one at the last position. */
  vlm_gen_options m = o;
  m.min_len = m.max_len;
  m.pad_id = 1;   /* out of the way: the tiny model may well pick id 0 */
  int *ml;
  int32_t *mt = same_both_ways(m, "min length = max length", &ml);
  int ok = 1;
  for (int64_t i = 0; i < IMAGES.shape[0]; i++) ok &= ml[i] == m.max_len || mt[i * m.max_len + ml[i] - 1] == m.pad_id;
  CHECK(ok, "min length: rows end before max_len with EOT");
  free(mt);
  free(ml);
  /* max_len 2: sot then the forced EOT */
  vlm_gen_options two = o;
  two.max_len = 2;
  two.min_len = 0;
  int32_t *tt = same_both_ways(two, "max length 2", NULL);
  CHECK(tt[1] == two.eot_id, "max length 2 ends with EOT");
  free(tt);

  /* n_ids: a tokenizer smaller than the model's vocabulary; no id at or past it is generated,
   * whichever the decoding (the unrestricted greedy run must pick some, or the check is void) */
  {
    const int64_t V = C.decoder.vocab_size, half = V / 2;
    vlm_gen_options r = o;
    r.sot_id = half - 2;
    r.eot_id = half - 1;
    int *rl;
    int32_t *free_ids = same_both_ways(r, "greedy, every id", &rl);
    int beyond = 0;
    for (int64_t b = 0; b < IMAGES.shape[0]; b++)
      for (int k = 1; k < rl[b]; k++) beyond += free_ids[b * r.max_len + k] >= half;
    CHECK(beyond > 0, "n_ids check: the unrestricted greedy captions use no id >= %lld", (long long)half);
    free(free_ids);
    free(rl);
    r.n_ids = half;
    const char *names[4] = {"greedy, ids below V/2", "3 beams, ids below V/2", "top-k 20, ids below V/2",
                            "top-p 0.9, ids below V/2"};
    for (int mode = 0; mode < 4; mode++) {
      vlm_gen_options q = r;
      q.beams = mode == 1 ? 3 : 1;
      q.top_k = mode == 2 ? 20 : 0;
      q.top_p = mode == 3 ? 0.9f : 0.0f;
      q.seed = 5;
      int32_t *ids = same_both_ways(q, names[mode], &rl);
      int bad = 0;
      for (int64_t b = 0; b < IMAGES.shape[0]; b++)
        for (int k = 0; k < rl[b]; k++) bad += ids[b * q.max_len + k] >= half;
      CHECK(bad == 0, "%s: %d ids >= %lld", names[mode], bad, (long long)half);
      free(ids);
      free(rl);
    }
    vlm_gen_options e2 = r;
    int32_t d2[64];
    int l2[8];
    e2.n_ids = V + 1;
    CHECK(vlm_coca_generate(&C, &P, &IMAGES, &e2, d2, l2) == VLM_ERR_ARG && strstr(vlm_last_error(), "more than the model"),
          "n_ids > V accepted: %s", vlm_last_error());
    e2.n_ids = half - 1;   /* the end-of-text id not among them */
    CHECK(vlm_coca_generate(&C, &P, &IMAGES, &e2, d2, l2) == VLM_ERR_ARG && strstr(vlm_last_error(), "end-of-text"),
          "eot >= n_ids accepted: %s", vlm_last_error());
  }

  /* option errors */
  vlm_gen_options e = o;
  int32_t dummy[64];
  int dl[8];
  e.max_len = (int)C.text.context_length + 1;
  CHECK(vlm_coca_generate(&C, &P, &IMAGES, &e, dummy, dl) == VLM_ERR_ARG && strstr(vlm_last_error(), "max length"),
        "max_len beyond the context: %s", vlm_last_error());
  e = o;
  e.beams = 2;
  e.top_k = 5;
  CHECK(vlm_coca_generate(&C, &P, &IMAGES, &e, dummy, dl) == VLM_ERR_ARG, "beams + top-k rejected");
  e = o;
  e.eot_id = 100000;
  CHECK(vlm_coca_generate(&C, &P, &IMAGES, &e, dummy, dl) == VLM_ERR_ARG && strstr(vlm_last_error(), "vocabulary"),
        "eot outside the vocabulary: %s", vlm_last_error());
  e = o;
  e.temperature = 0;
  CHECK(vlm_coca_generate(&C, &P, &IMAGES, &e, dummy, dl) == VLM_ERR_ARG, "temperature 0 rejected");
  vlm_st_close(&in);
  vlm_coca_params_free(&P);
  return vt_finish();
}
