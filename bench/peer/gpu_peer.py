#!/usr/bin/env python3
"""GPU peer for bench/bench_gpu.c: PyTorch + transformers CLIPModel with the
open_clip ViT-B-32 shapes (random weights, GELU), SDPA attention, bf16
autocast, fused AdamW, the same batch size and context length.

Prints human-readable lines, then "PEER key value" lines that tests/gpu/run.sh
puts beside bench_gpu's "VLM key value" lines.
Usage: gpu_peer.py [--batch B] [--steps N] [--gemm N] [--quick]
"""
import argparse
import math
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--gemm", type=int, default=8192)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.steps, a.gemm = 5, 4096
    try:
        import torch
        import transformers
        from transformers import CLIPConfig, CLIPModel
    except Exception as e:  # noqa: BLE001
        print(f"gpu_peer: PyTorch/transformers not importable: {e}")
        return 0
    if not torch.cuda.is_available():
        print("gpu_peer: no CUDA GPU: skipped")
        return 0
    dev = torch.device("cuda")
    print(f"gpu_peer: torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.cuda.get_device_name(0)}")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    # bf16 GEMM rate
    n = a.gemm
    x = torch.full((n, n), 0.01, device=dev, dtype=torch.bfloat16)
    w = torch.full((n, n), 0.02, device=dev, dtype=torch.bfloat16)
    ts = []
    for _ in range(12):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(5):
            y = x @ w.t()
        torch.cuda.synchronize()
        ts.append((time.perf_counter() - t0) / 5)
    del x, w, y
    t = sorted(ts[2:])[len(ts[2:]) // 2]
    gemm = 2.0 * n ** 3 / t / 1e12
    print(f"  bf16 GEMM {n}^3 (torch)                         {gemm:8.1f} TFLOP/s")

    B, L, S = a.batch, 77, 224
    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                         num_attention_heads=8, max_position_embeddings=77, hidden_act="gelu",
                         bos_token_id=49406, eos_token_id=49407, pad_token_id=0),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=S, patch_size=32, hidden_act="gelu"),
        projection_dim=512)
    try:
        model = CLIPModel._from_config(cfg, attn_implementation="sdpa")
    except Exception as e:  # noqa: BLE001  (older transformers: no attn_implementation)
        print(f"gpu_peer: attn_implementation='sdpa' refused ({e}); default attention")
        model = CLIPModel(cfg)
    model = model.to(dev).train()
    print(f"  attention implementation: {getattr(model.config, '_attn_implementation', '?')}")
    nparams = sum(p.numel() for p in model.parameters())
    print(f"  CLIPModel ViT-B/32: {nparams / 1e6:.1f} M parameters")

    g = torch.Generator(device="cpu").manual_seed(7)
    pixels = torch.randn(B, 3, S, S, generator=g).to(dev)
    ids = torch.zeros(B, L, dtype=torch.long)
    for b in range(B):
        ln = 5 + int(torch.randint(0, L - 6, (1,), generator=g))
        ids[b, 0] = 49406
        ids[b, 1:ln] = torch.randint(1, 49405, (ln - 1,), generator=g)
        ids[b, ln] = 49407
    ids = ids.to(dev)
    try:
        opt = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2,
                                fused=True)
        fused = True
    except Exception:  # noqa: BLE001
        opt = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
        fused = False
    print(f"  AdamW fused: {fused}")

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(input_ids=ids, pixel_values=pixels, return_loss=True)
        out.loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        return out.loss

    for _ in range(2):
        l0 = step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    train = B * a.steps / dt
    print(f"  training step, batch {B}, bf16 autocast        {train:8.1f} samples/s ({dt / a.steps * 1e3:.1f} ms/step)"
          f", loss {float(l0):.4f} -> {float(loss):.4f}")
    opt.zero_grad(set_to_none=True)
    del opt

    model.eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(2):
            model.get_image_features(pixel_values=pixels)
        torch.cuda.synchronize()
        reps = a.steps * 2
        t0 = time.perf_counter()
        for _ in range(reps):
            model.get_image_features(pixel_values=pixels)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    enc = B * reps / dt
    print(f"  image encoding, batch {B}, bf16 autocast       {enc:8.1f} images/s ({dt / reps * 1e3:.1f} ms/batch)")
    print(f"PEER gemm_bf16_tflops {gemm:.6g}")
    print(f"PEER train_samples_per_s {train:.6g}")
    print(f"PEER encode_images_per_s {enc:.6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
