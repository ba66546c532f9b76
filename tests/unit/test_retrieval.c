/* Retrieval and zero-shot metrics on hand-made embeddings with known ranks. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "contrastive/contrastive.h"
#include "gradcheck.h"

static int near(double a, double b) { return fabs(a - b) < 1e-9; }

int main(void) {
  /* Images are permutations of (4,3,2,1) (equal norms), texts one-hot, so
   * score(image i, text j) = x_i[j] / sqrt(30). */
  const float img[16] = {4, 3, 2, 1, 4, 3, 2, 1, 4, 3, 1, 2, 1, 2, 3, 4};
  const float txt[16] = {1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0.5f, 0, 0, 0, 0, 3};  /* norms do not matter */
  vlm_retrieval_metrics m;
  CHECK(vlm_retrieval_compute(img, 4, txt, 4, NULL, NULL, 4, &m) == VLM_OK, "%s", vlm_last_error());
  /* i2t ranks 1, 2, 4, 1; t2i ranks 1, 1, 4, 1 (ties with the truth do not count against it) */
  CHECK(m.i2t.queries == 4 && near(m.i2t.r1, 0.5) && near(m.i2t.r5, 1.0) && near(m.i2t.r10, 1.0),
        "i2t recall %g %g %g", m.i2t.r1, m.i2t.r5, m.i2t.r10);
  CHECK(near(m.i2t.mean_rank, 2.0) && near(m.i2t.median_rank, 1.0), "i2t mean %g median %g", m.i2t.mean_rank,
        m.i2t.median_rank);
  CHECK(near(m.t2i.r1, 0.75) && near(m.t2i.r5, 1.0) && near(m.t2i.mean_rank, 1.75) && near(m.t2i.median_rank, 1.0),
        "t2i r1 %g r5 %g mean %g median %g", m.t2i.r1, m.t2i.r5, m.t2i.mean_rank, m.t2i.median_rank);

  /* Median of an even count: positions 1,1,3,3 -> median 2 -> 3; 0,1 -> 0.5 -> floor 0 -> 1 */
  {
    const float a[4] = {0, 1, 1, 0}, b[4] = {1, 0, 0, 1};  /* two images, two texts, both swapped */
    CHECK(vlm_retrieval_compute(a, 2, b, 2, NULL, NULL, 2, &m) == VLM_OK, "%s", vlm_last_error());
    CHECK(near(m.i2t.r1, 0) && near(m.i2t.mean_rank, 2) && near(m.i2t.median_rank, 2), "swapped: r1 %g mean %g med %g",
          m.i2t.r1, m.i2t.mean_rank, m.i2t.median_rank);
  }

  /* Items: texts 0 and 1 are the same item (captions of images 0 and 1 that the shapes
   * rule counts as one), so images 0 and 1 both match texts 0 and 1, and texts 0 and 1
   * are one image->text candidate scoring its best row. */
  const int64_t same01[4] = {0, 0, 1, 2};
  CHECK(vlm_retrieval_compute(img, 4, txt, 4, NULL, same01, 4, &m) == VLM_OK, "%s", vlm_last_error());
  /* i2t, item scores {t0,t1} = max, t2, t3: image 0 (4,3,2,1): 4 2 1 -> rank 1; image 1 the
   * same; image 2 (4,3,1,2): 4 1 2, its item t2 (1) below 2 items -> rank 3 (as rows, t0,
   * t1 and t3 above it: 4); image 3 (1,2,3,4): 2 3 4 -> 1. Ranks 1, 1, 3, 1. */
  CHECK(m.i2t.queries == 4 && near(m.i2t.r1, 0.75) && near(m.i2t.r5, 1) && near(m.i2t.mean_rank, 1.5) &&
            near(m.i2t.median_rank, 1),
        "items i2t r1 %g mean %g median %g", m.i2t.r1, m.i2t.mean_rank, m.i2t.median_rank);
  /* t2i, images are candidates each: text 0 (column 0: 4 4 4 1) matches images 0, 1 ->
   * 4, image 2's 4 ties -> 1; text 1 (3 3 3 2) -> 1; text 2 (2 2 1 3) matches image 2 (1)
   * below 2, 2, 3 -> 4; text 3 (1 1 2 4) -> 1. Ranks 1, 1, 4, 1. */
  CHECK(m.t2i.queries == 4 && near(m.t2i.r1, 0.75) && near(m.t2i.mean_rank, 1.75) && near(m.t2i.r5, 1.0),
        "items t2i r1 %g mean %g", m.t2i.r1, m.t2i.mean_rank);

  /* The shapes rule with repeated captions (the exploratory tester's 21 copies of each of
   * 48 captions): C = 12 captions, each the caption of R = 12 images; text j is a copy
   * of caption j % C (one-hot e_c, identical copies), image i's caption is i % C and
   * exactly t - 1 other captions score above its own, t = i / C + 1 in 1..12. Over
   * distinct captions image->text ranks are t: each of 1..12 for 12 images: R@1 1/12,
   * R@5 5/12, R@10 10/12, mean 6.5, median floor((5 + 6) / 2) + 1 = 6. Counting rows,
   * each wrong caption would count 12 times: ranks 1 + 12 (t - 1), R@1 = R@5 = R@10 =
   * 1/12, mean 67. */
  {
    enum { C = 12, R = 12, NI = C * R };
    static float vi[NI * C], vt[NI * C];
    static int64_t item[NI];
    for (int i = 0; i < NI; i++) {
      int c = i % C, t = i / C + 1;
      for (int k = 0; k < C; k++) {
        int d = (k - c + C) % C;   /* 1..C-1 for the other captions: scores C-1 down to 1 */
        vi[i * C + k] = k == c ? (float)C - (float)t + 0.5f : (float)(C - d);
      }
      vt[i * C + c] = 1;
      item[i] = c;
    }
    CHECK(vlm_retrieval_compute(vi, NI, vt, NI, NULL, item, C, &m) == VLM_OK, "%s", vlm_last_error());
    CHECK(m.i2t.queries == NI && near(m.i2t.r1, 1.0 / 12) && near(m.i2t.r5, 5.0 / 12) && near(m.i2t.r10, 10.0 / 12) &&
              near(m.i2t.mean_rank, 6.5) && near(m.i2t.median_rank, 6),
          "repeated captions: i2t R@1 %g R@5 %g R@10 %g mean %g median %g", m.i2t.r1, m.i2t.r5, m.i2t.r10,
          m.i2t.mean_rank, m.i2t.median_rank);
    /* Without the rule every text is its own item (text i the caption of image i only):
     * the copies of the own caption tie with it and do not count, every copy of a wrong
     * one does: the row count above. */
    CHECK(vlm_retrieval_compute(vi, NI, vt, NI, NULL, NULL, C, &m) == VLM_OK && near(m.i2t.r1, 1.0 / 12) &&
              near(m.i2t.r5, 1.0 / 12) && near(m.i2t.r10, 1.0 / 12) && near(m.i2t.mean_rank, 67) &&
              near(m.i2t.median_rank, 67),
          "repeated captions, no rule: i2t R@1 %g R@10 %g mean %g median %g", m.i2t.r1, m.i2t.r10, m.i2t.mean_rank,
          m.i2t.median_rank);
  }

  /* COCO protocol: image 0 has captions t0, t1, image 1 has t2, t3 (different texts,
   * one-hot; images (1,2,3,4) and (4,3,2,1), equal norms). Image->text counts the wrong
   * captions one by one: image 0's best is t1 (2), below t2 (3) and t3 (4) -> rank 3
   * (not 2, as grouping by image would give); image 1: t2 (2) below t0 (4), t1 (3) -> 3.
   * Text->image, each image once: t0 (1 vs 4) -> 2, t1 (2 vs 3) -> 2, t2 (2 vs 3) -> 2,
   * t3 (1 vs 4) -> 2. */
  {
    const float a[8] = {1, 2, 3, 4, 4, 3, 2, 1}, b[16] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
    const int64_t of[4] = {0, 0, 1, 1};
    CHECK(vlm_retrieval_compute(a, 2, b, 4, of, NULL, 4, &m) == VLM_OK, "%s", vlm_last_error());
    CHECK(m.i2t.queries == 2 && near(m.i2t.mean_rank, 3) && near(m.i2t.r1, 0) && near(m.i2t.r5, 1) &&
              m.t2i.queries == 4 && near(m.t2i.mean_rank, 2) && near(m.t2i.r1, 0) && near(m.t2i.median_rank, 2),
          "COCO protocol: i2t q %lld mean %g, t2i q %lld mean %g", (long long)m.i2t.queries, m.i2t.mean_rank,
          (long long)m.t2i.queries, m.t2i.mean_rank);
    /* With the rule, t1 and t2 the same text ("b"): image 0 has a, b; image 1 has b, c.
     * Image 0 matches t0, t1, t2 (its best: t1, t2 = 3 is one item) -> only c (4) above:
     * 2; image 1 matches t1, t2, t3: best t1 (3) -> a (4) above: 2. t0 (a): image 0 only,
     * 1 below 4 -> 2; t1 (b): both images -> 1; t2 the same -> 1; t3 (c): image 1 only, 1
     * below 4 -> 2. (A single key per image cannot say this: image 1 would take its
     * first caption's key, b's, and t3 would match no image.) */
    const int64_t abbc[4] = {0, 1, 1, 3};
    CHECK(vlm_retrieval_compute(a, 2, b, 4, of, abbc, 4, &m) == VLM_OK, "%s", vlm_last_error());
    CHECK(m.i2t.queries == 2 && near(m.i2t.mean_rank, 2) && m.t2i.queries == 4 && m.t2i.skipped == 0 &&
              near(m.t2i.mean_rank, 1.5) && near(m.t2i.r1, 0.5),
          "COCO + rule: i2t mean %g, t2i q %lld skipped %lld mean %g", m.i2t.mean_rank, (long long)m.t2i.queries,
          (long long)m.t2i.skipped, m.t2i.mean_rank);
  }
  /* an image without captions is a query with no match (skipped); texts with no image
   * or 4 images with 3 texts and no image rows are errors */
  {
    const float a[4] = {1, 0, 0, 1}, b[2] = {1, 0};
    const int64_t of0[1] = {0}, bad[1] = {2};
    CHECK(vlm_retrieval_compute(a, 2, b, 1, of0, NULL, 2, &m) == VLM_OK && m.i2t.queries == 1 && m.i2t.skipped == 1 &&
              m.t2i.queries == 1 && near(m.t2i.r1, 1),
          "image without captions: i2t q %lld skipped %lld", (long long)m.i2t.queries, (long long)m.i2t.skipped);
    CHECK(vlm_retrieval_compute(a, 2, b, 1, bad, NULL, 2, &m) != VLM_OK, "a text of image 2 of 2 accepted");
  }
  CHECK(vlm_retrieval_compute(img, 4, txt, 3, NULL, NULL, 4, &m) != VLM_OK, "4 images, 3 texts and no image rows accepted");

  /* Against a brute-force reference on random embeddings (width 37: not a multiple of the
   * kernel's lanes), 29 images with 3 captions each, scored in blocks of queries across
   * threads. Image 21 repeats image 2 and text 70 repeats text 10, so the copies land in
   * different query blocks and block slots: each copy must tie exactly with the other
   * (a tie with the truth does not count against it), wherever it is scored. */
  {
    enum { N = 29, M = 3 * N, E = 37 };
    static float a[N * E], b[M * E];
    static int64_t of[M];
    uint64_t x = 99;
    for (int i = 0; i < N * E; i++) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      a[i] = (float)((double)(x >> 40) / (double)(1 << 24) - 0.5);
    }
    memcpy(a + 21 * E, a + 2 * E, E * sizeof(float));
    for (int j = 0; j < M; j++) {
      of[j] = j / 3;
      for (int k = 0; k < E; k++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        b[j * E + k] = a[of[j] * E + k] + (float)((double)(x >> 40) / (double)(1 << 24) - 0.5) * 1.5f;
      }
    }
    of[70] = 2;
    memcpy(b + 70 * E, b + 10 * E, E * sizeof(float));   /* text 10 is image 3's; text 70 image 2's */
    /* the reference: unit rows, per-pair double sums, ranks by the definition (strictly
     * above the best match; the copies score exactly alike here too) */
    static double sc[N][M];
    double na[N], nb[M], mean_i2t = 0, mean_t2i = 0;
    for (int i = 0; i < N; i++) {
      double s = 0;
      for (int k = 0; k < E; k++) s += (double)a[i * E + k] * a[i * E + k];
      na[i] = 1.0 / sqrt(s);
    }
    for (int j = 0; j < M; j++) {
      double s = 0;
      for (int k = 0; k < E; k++) s += (double)b[j * E + k] * b[j * E + k];
      nb[j] = 1.0 / sqrt(s);
    }
    for (int i = 0; i < N; i++)
      for (int j = 0; j < M; j++) {
        double s = 0;
        for (int k = 0; k < E; k++) s += (double)(float)(a[i * E + k] * na[i]) * (float)(b[j * E + k] * nb[j]);
        sc[i][j] = s;
      }
    for (int i = 0; i < N; i++) {
      double best = -1e300;
      for (int j = 0; j < M; j++)
        if (of[j] == i && sc[i][j] > best) best = sc[i][j];
      int higher = 0;
      for (int j = 0; j < M; j++) higher += of[j] != i && sc[i][j] > best;
      mean_i2t += higher + 1;
    }
    for (int j = 0; j < M; j++) {
      int higher = 0;
      for (int i = 0; i < N; i++) higher += i != of[j] && sc[i][j] > sc[of[j]][j];
      mean_t2i += higher + 1;
    }
    CHECK(vlm_retrieval_compute(a, N, b, M, of, NULL, E, &m) == VLM_OK, "%s", vlm_last_error());
    CHECK(m.i2t.queries == N && m.t2i.queries == M && fabs(m.i2t.mean_rank - mean_i2t / N) < 1e-9 &&
              fabs(m.t2i.mean_rank - mean_t2i / M) < 1e-9,
          "random embeddings: mean ranks i2t %g t2i %g, brute force %g %g", m.i2t.mean_rank, m.t2i.mean_rank,
          mean_i2t / N, mean_t2i / M);
    /* the copies must matter: counting ties against the truth would move some rank */
    int ties = 0;
    for (int j = 0; j < M; j++)
      for (int i = 0; i < N; i++) ties += i != of[j] && sc[i][j] == sc[of[j]][j];
    for (int i = 0; i < N; i++)
      for (int j = 0; j < M; j++)
        for (int j2 = 0; j2 < M; j2++) ties += of[j] != i && of[j2] == i && sc[i][j] == sc[i][j2];
    CHECK(ties >= 2, "random embeddings: the copies make only %d ties", ties);
  }

  /* The shapes rule: identical caption ids share the first one's key. */
  {
    const int32_t ids[10] = {1, 2, 3, 4, 1, 2, 9, 9, 3, 4};   /* rows 0 and 2 equal, 1 and 4 equal */
    const int64_t base[5] = {10, 11, 12, 13, 14};
    int64_t key[5];
    CHECK(vlm_retrieval_caption_keys(ids, 5, 2, base, key) == VLM_OK && key[0] == 10 && key[1] == 11 &&
              key[2] == 10 && key[3] == 13 && key[4] == 11,
          "caption keys %lld %lld %lld %lld %lld", (long long)key[0], (long long)key[1], (long long)key[2],
          (long long)key[3], (long long)key[4]);
    CHECK(vlm_retrieval_caption_keys(ids, 5, 2, NULL, key) == VLM_OK && key[2] == 0 && key[3] == 3 && key[4] == 1, "no base");
  }
  /* vlm_retrieval_first_of_groups: the first row of each group, in order of appearance
   * (COCO's 5 rows per image -> the image once), against a quadratic reference. */
  {
    const int64_t g[8] = {7, 3, 7, 9, 3, 3, -1, 9};
    int64_t rows[8], U = -1;
    int64_t of[8];
    CHECK(vlm_retrieval_first_of_groups(g, 8, rows, &U, of) == VLM_OK && U == 4 && rows[0] == 0 && rows[1] == 1 &&
              rows[2] == 3 && rows[3] == 6,
          "first_of_groups: U %lld", (long long)U);
    const int64_t want_of[8] = {0, 1, 0, 2, 1, 1, 3, 2};
    CHECK(!memcmp(of, want_of, sizeof of), "first_of_groups: of %lld %lld %lld %lld %lld %lld %lld %lld",
          (long long)of[0], (long long)of[1], (long long)of[2], (long long)of[3], (long long)of[4], (long long)of[5],
          (long long)of[6], (long long)of[7]);
    enum { N = 5000 };
    static int64_t gg[N], rr[N], want[N];
    uint64_t x = 12345;
    for (int i = 0; i < N; i++) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      gg[i] = (int64_t)(x >> 33) % 1700 * 1000003;  /* ~1700 groups, large and spread values */
    }
    int64_t nw = 0;
    for (int i = 0; i < N; i++) {
      int first = 1;
      for (int j = 0; j < i && first; j++) first = gg[j] != gg[i];
      if (first) want[nw++] = i;
    }
    CHECK(vlm_retrieval_first_of_groups(gg, N, rr, &U, NULL) == VLM_OK && U == nw &&
              !memcmp(rr, want, (size_t)nw * sizeof(int64_t)),
          "first_of_groups: %lld groups, want %lld", (long long)U, (long long)nw);
    CHECK(vlm_retrieval_first_of_groups(gg, 0, rr, &U, NULL) == VLM_OK && U == 0, "first_of_groups: empty");
  }
  /* vlm_group_map: add reports the row already there, ref reads and writes it in place,
   * and every key survives the table's growth (20000 keys; the table starts at 1024 slots). */
  {
    vlm_group_map m = {0};
    int64_t found = 7;
    CHECK(vlm_group_map_ref(&m, 5) == NULL, "group map: ref on an empty map");
    CHECK(vlm_group_map_add(&m, INT64_MIN, 0, &found) == VLM_OK && found == -1, "group map: new key");
    CHECK(vlm_group_map_add(&m, INT64_MIN, 9, &found) == VLM_OK && found == 0, "group map: key there, row %lld",
          (long long)found);
    CHECK(vlm_group_map_add(&m, -1, 3, &found) == VLM_OK && found == -1 && m.n == 2, "group map: -1 is a key");
    int64_t *r = vlm_group_map_ref(&m, -1);
    CHECK(r && *r == 3, "group map: ref reads");
    if (r) *r = 11;
    CHECK(vlm_group_map_add(&m, -1, 4, &found) == VLM_OK && found == 11, "group map: ref writes");
    CHECK(vlm_group_map_ref(&m, 1) == NULL, "group map: absent key");
    int ok = 1;
    for (int64_t i = 0; i < 20000 && ok; i++) ok = vlm_group_map_add(&m, i * 4096, i + 100, &found) == VLM_OK && found == -1;
    for (int64_t i = 0; i < 20000 && ok; i++) {
      int64_t *v = vlm_group_map_ref(&m, i * 4096);
      ok = v && *v == i + 100;
    }
    CHECK(ok && m.n == 20002 && m.cap >= 2 * m.n, "group map: 20000 keys after growth (n %zu, cap %zu)", m.n, m.cap);
    r = vlm_group_map_ref(&m, INT64_MIN);
    CHECK(r && *r == 0, "group map: the first key after growth");
    vlm_group_map_free(&m);
    CHECK(m.cap == 0 && m.n == 0 && vlm_group_map_ref(&m, 0) == NULL, "group map: freed");
  }
  return vt_finish();
}
