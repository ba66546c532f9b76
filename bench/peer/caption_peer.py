"""open_clip's CoCa.generate timed the way bench_caption times vlm (the peer of bench_caption).

    caption_peer.py [--model coca_ViT-B-32] [--images B] [--tokens N] [--reps R] [--threads T]

Random weights (open_clip's initialisation, the decoder projection filled as the
fixtures do), random images, the image tower once outside the timing (as bench_caption),
then open_clip's generate with generation_type="top_k", top_k=1 (greedy) and
min_seq_len = N - 1, seq_len = N, so every caption has exactly N tokens (sot, N-2
chosen ids, the forced eot) like bench_caption's. Needs torch, open_clip_torch and
transformers (open_clip's generate imports its logits processors).
Prints one line: `peer generate N tokens x B image(s): median MS ms (R reps)`.
"""
import argparse
import statistics
import time

import torch
import open_clip


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="coca_ViT-B-32")
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=30)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = open_clip.create_model(a.model)
    w = model.text_decoder.text_projection
    with torch.no_grad():
        w.normal_(std=w.shape[0] ** -0.5)
    model.eval()
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    images = torch.randn(a.images, 3, size, size)
    times = []
    with torch.no_grad():
        for _ in range(a.reps):
            t0 = time.perf_counter()
            out = model.generate(images, generation_type="top_k", top_k=1, seq_len=a.tokens,
                                 min_seq_len=a.tokens - 1, repetition_penalty=1.0)
            times.append(time.perf_counter() - t0)
    # generate encodes the images itself: time that part alone and subtract it
    with torch.no_grad():
        t0 = time.perf_counter()
        model._encode_image(images)
        t_img = time.perf_counter() - t0
    med = statistics.median(times)
    print(f"peer generate {a.tokens} tokens x {a.images} image(s): median {med * 1e3:.1f} ms "
          f"({a.reps} reps; image tower {t_img * 1e3:.1f} ms inside, {(med - t_img) * 1e3:.1f} ms without); "
          f"output {tuple(out.shape)}")


if __name__ == "__main__":
    main()
