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

  /* Zero-shot: 3 classes x 2 templates. */
  const float temb[18] = {2, 0, 0, 1, 0.1f, 0, 0, 1, 0, 0, 3, 0.2f, 0, 0, 1, 0.1f, 0, 1};
  float w[9];
  vlm_zeroshot_weights(temb, 3, 2, 3, w);
  /* class 0: mean(e0, normalize(1, .1, 0)) renormalized */
  double n1 = sqrt(1.01), m0 = 0.5 * (1 + 1 / n1), m1 = 0.5 * (0.1 / n1), nn = sqrt(m0 * m0 + m1 * m1);
  CHECK(fabs(w[0] - m0 / nn) < 1e-6 && fabs(w[1] - m1 / nn) < 1e-6 && w[2] == 0, "class 0 weight %g %g %g", w[0], w[1],
        w[2]);
  const float x[15] = {1, 0, 0, 0.1f, 1, 0, 0, 0, 1, 1, 0.2f, 0, 0, 1, 0.01f};
  const int lab[5] = {0, 1, 2, 1, 2};
  const uint8_t sub[5] = {0, 0, 0, 1, 1};
  vlm_zeroshot_result z;
  vlm_zeroshot_eval(x, lab, sub, 5, w, 3, 3, &z);
  /* sample 3 (label 1) looks like class 0, sample 4 (label 2) like class 1: 3 of 5 right */
  CHECK(z.n == 5 && near(z.top1, 0.6) && near(z.top5, 1.0), "zero-shot n %lld top1 %g top5 %g", (long long)z.n, z.top1,
        z.top5);
  CHECK(z.n_subset == 2 && near(z.subset_top1, 0.0) && near(z.subset_top5, 1.0), "subset n %lld top1 %g",
        (long long)z.n_subset, z.subset_top1);
  return vt_finish();
}
