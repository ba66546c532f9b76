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
  CHECK(vlm_retrieval_compute(img, 4, NULL, txt, 4, NULL, 4, &m) == VLM_OK, "%s", vlm_last_error());
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
    CHECK(vlm_retrieval_compute(a, 2, NULL, b, 2, NULL, 2, &m) == VLM_OK, "%s", vlm_last_error());
    CHECK(near(m.i2t.r1, 0) && near(m.i2t.mean_rank, 2) && near(m.i2t.median_rank, 2), "swapped: r1 %g mean %g med %g",
          m.i2t.r1, m.i2t.mean_rank, m.i2t.median_rank);
  }

  /* Shapes rule / groups: images 0 and 1 share a caption (key 0). */
  const int64_t ik[4] = {0, 0, 1, 2}, tk[4] = {0, 0, 1, 2};
  CHECK(vlm_retrieval_compute(img, 4, ik, txt, 4, tk, 4, &m) == VLM_OK, "%s", vlm_last_error());
  /* i2t: image 1 now matches text 0 (score 4) -> rank 1: ranks 1, 1, 4, 1 */
  CHECK(near(m.i2t.r1, 0.75) && near(m.i2t.mean_rank, 1.75), "keyed i2t r1 %g mean %g", m.i2t.r1, m.i2t.mean_rank);
  /* t2i: text 1 matches images 0, 1 (best 3) -> 1; text 2 -> image 2 (1) below 2, 2, 3 -> 4 */
  CHECK(near(m.t2i.r1, 0.75) && near(m.t2i.mean_rank, 1.75) && near(m.t2i.r5, 1.0), "keyed t2i r1 %g mean %g",
        m.t2i.r1, m.t2i.mean_rank);
  /* COCO-like: one image, several captions; a caption with no image is skipped */
  {
    const float a[2] = {1, 0}, b[6] = {1, 0, 0.9f, 0.1f, 0, 1};
    const int64_t ak[1] = {7}, bk[3] = {7, 7, 8};
    CHECK(vlm_retrieval_compute(a, 1, ak, b, 3, bk, 2, &m) == VLM_OK, "%s", vlm_last_error());
    CHECK(m.i2t.queries == 1 && near(m.i2t.r1, 1) && m.t2i.queries == 2 && m.t2i.skipped == 1 && near(m.t2i.r1, 1),
          "groups: i2t q %lld r1 %g, t2i q %lld skipped %lld", (long long)m.i2t.queries, m.i2t.r1,
          (long long)m.t2i.queries, (long long)m.t2i.skipped);
  }
  CHECK(vlm_retrieval_compute(img, 4, NULL, txt, 3, NULL, 4, &m) != VLM_OK, "4 images, 3 texts and no keys accepted");

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
    CHECK(vlm_retrieval_first_of_groups(g, 8, rows, &U) == VLM_OK && U == 4 && rows[0] == 0 && rows[1] == 1 &&
              rows[2] == 3 && rows[3] == 6,
          "first_of_groups: U %lld", (long long)U);
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
    CHECK(vlm_retrieval_first_of_groups(gg, N, rr, &U) == VLM_OK && U == nw &&
              !memcmp(rr, want, (size_t)nw * sizeof(int64_t)),
          "first_of_groups: %lld groups, want %lld", (long long)U, (long long)nw);
    CHECK(vlm_retrieval_first_of_groups(gg, 0, rr, &U) == VLM_OK && U == 0, "first_of_groups: empty");
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
