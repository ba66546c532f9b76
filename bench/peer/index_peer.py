"""Peer of `vlm index`: open_clip encoding a folder of image files the way a user's
script would: PIL decode + open_clip's eval transform, batches of BATCH,
model.encode_image, L2-normalize; torch with THREADS threads, no_grad, eval mode,
ViT-B-32 with open_clip's random initialisation (fp32; --bf16: autocast bf16 with
LayerNormFp32, as bench/peer/clip_peer.py does).

Usage: index_peer.py THREADS BATCH [--bf16] FILE...
Prints "peer N images S seconds R images/s" for the encoding loop (model set-up excluded)."""
import sys
import time

import torch
import open_clip
from PIL import Image

threads, batch = int(sys.argv[1]), int(sys.argv[2])
files = sys.argv[3:]
bf16 = False
if files and files[0] == "--bf16":
    bf16, files = True, files[1:]
torch.set_num_threads(threads)
model, _, transform = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
model.eval()
if bf16:
    from open_clip.transformer import LayerNorm, LayerNormFp32
    for name, mod in list(model.named_modules()):
        for cname, child in list(mod.named_children()):
            if isinstance(child, LayerNorm):
                new = LayerNormFp32(child.normalized_shape, eps=child.eps)
                new.load_state_dict(child.state_dict())
                setattr(mod, cname, new)
t0 = time.perf_counter()
n = 0
with torch.no_grad():
    for s in range(0, len(files), batch):
        x = torch.stack([transform(Image.open(f)) for f in files[s:s + batch]])
        if bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                f = model.encode_image(x)
            f = f.float()
        else:
            f = model.encode_image(x)
        f = f / f.norm(dim=-1, keepdim=True)
        n += f.shape[0]
dt = time.perf_counter() - t0
print(f"peer {n} images {dt:.3f} seconds {n / dt:.3f} images/s", flush=True)
