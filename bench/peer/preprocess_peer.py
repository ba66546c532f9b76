"""Peer of bench_preprocess: PIL decode + open_clip's eval transform (torchvision
Resize(224, bicubic), CenterCrop(224), RGB, ToTensor, Normalize), one thread.

Usage: preprocess_peer.py ROUNDS FILE...
Prints one line per file: "peer FILE MS" with the median ms per image."""
import io
import statistics
import sys
import time

import torch
from PIL import Image
import open_clip

torch.set_num_threads(1)
rounds = int(sys.argv[1])
# open_clip's own eval transform for a 224 model (OpenAI mean/std).
_, _, transform = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
for path in sys.argv[2:]:
    data = open(path, "rb").read()
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        img = Image.open(io.BytesIO(data))
        x = transform(img)
        ts.append(time.perf_counter() - t0)
    assert tuple(x.shape) == (3, 224, 224)
    print(f"peer {path} {statistics.median(ts) * 1e3:.3f}", flush=True)
