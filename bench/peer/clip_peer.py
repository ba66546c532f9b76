#!/usr/bin/env python3
"""The PyTorch peer of bench_clip: open_clip on the CPU, the same workloads.

  ViT-B-32 (random open_clip init, eval, no_grad): image encoding at batch 1
  and 8, text encoding at batch 8 (context 77), fp32 and under
  torch.autocast("cpu", dtype=torch.bfloat16) (with the cosine similarity of
  the bf16 features to the fp32 ones); the issue-3 training config ("small":
  embed 256; vision 64/8, width 256, 6 layers, 4 heads; text context 32,
  vocab 8192, width 256, 6 layers, 4 heads) at batch 32: forward, ClipLoss,
  backward, grad-norm clip 1.0, AdamW, logit_scale clamp; fp32.
  Plus the 2048^3 fp32 torch.mm rate, so a handicapped BLAS shows.

Run it through bench/run_clip_bench.sh (which sets OPENBLAS_CORETYPE and
OMP_WAIT_POLICY=PASSIVE and uses the venv of bench/peer/setup.sh).
Prints machine-readable lines "PEER key value" (times in ms: the median of
--reps timed calls after one warm-up call).
"""
import argparse
import math
import os
import statistics
import sys
import time


def med_ms(fn, reps):
    fn()  # warm-up (allocations, oneDNN primitives)
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return statistics.median(t) * 1e3


def out(key, val):
    print(f"PEER {key} {val}", flush=True)


def make_ids(torch, B, L, V, seed):
    # Like bench_clip: row i holds 5 + (7 i) % (L - 6) random ids, then EOT = V - 1, then zeros.
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(B, L, dtype=torch.long)
    for i in range(B):
        n = 5 + (i * 7) % (L - 6)
        ids[i, :n] = torch.randint(1, V - 1, (n,), generator=g)
        ids[i, n] = V - 1
    return ids


def oc_version():
    try:
        from importlib.metadata import version
        return version("open_clip_torch")
    except Exception:
        return "?"


def cosine_min(a, b):
    import torch
    a = a.float()
    b = b.float()
    return torch.nn.functional.cosine_similarity(a, b, dim=-1).min().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma list of: gemm,encode,bf16,train")
    ap.add_argument("--serve", action="store_true", help="one timed call per stdin line (bench/clip_compare.py)")
    a = ap.parse_args()
    skip = set(s for s in a.skip.split(",") if s)
    try:
        import torch
        import open_clip
    except Exception as e:  # the driver turns this into a skip message
        print(f"PEER unavailable {type(e).__name__}: {e}", flush=True)
        return 3
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.serve:
        return serve(torch, open_clip)
    out("versions", f"torch={torch.__version__},open_clip={oc_version()},"
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')},"
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '-')},threads={torch.get_num_threads()}")

    if "gemm" not in skip:
        x = torch.randn(2048, 2048)
        y = torch.randn(2048, 2048)
        ms = med_ms(lambda: torch.mm(x, y), max(a.reps, 3))
        out("gemm_f32_gflops", f"{2 * 2048 ** 3 / (ms * 1e-3) * 1e-9:.1f}")
        del x, y

    if "encode" not in skip:
        model = open_clip.create_model("ViT-B-32", pretrained=None)
        model.eval()
        img = {b: torch.randn(b, 3, 224, 224, generator=torch.Generator().manual_seed(7)) for b in (1, 8)}
        ids8 = make_ids(torch, 8, 77, 49408, 7)
        feats = {}
        with torch.no_grad():
            for b in (1, 8):
                out(f"img_b{b}_f32_ms", f"{med_ms(lambda: model.encode_image(img[b]), a.reps):.2f}")
                feats[f"img_b{b}"] = model.encode_image(img[b])
            out("txt_b8_f32_ms", f"{med_ms(lambda: model.encode_text(ids8), a.reps):.2f}")
            feats["txt_b8"] = model.encode_text(ids8)
            if "bf16" not in skip:
                # torch 1.13's CPU autocast runs layer_norm with bf16 input and f32 weights into
                # "expected scalar type BFloat16 but found Float": give the model open_clip's own
                # LayerNormFp32 (what open_clip uses for its low-precision modes; same parameters).
                from open_clip.transformer import LayerNorm, LayerNormFp32
                for m in model.modules():
                    if type(m) is LayerNorm:
                        m.__class__ = LayerNormFp32
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    for b in (1, 8):
                        out(f"img_b{b}_bf16_ms", f"{med_ms(lambda: model.encode_image(img[b]), a.reps):.2f}")
                        out(f"cos_img_b{b}_bf16", f"{cosine_min(model.encode_image(img[b]), feats[f'img_b{b}']):.6f}")
                    out("txt_b8_bf16_ms", f"{med_ms(lambda: model.encode_text(ids8), a.reps):.2f}")
                    out("cos_txt_b8_bf16", f"{cosine_min(model.encode_text(ids8), feats['txt_b8']):.6f}")
        del model
        if "bf16" not in skip and "bf16w" not in skip:
            # open_clip's precision="bf16": weights converted to bf16 once (LayerNorms stay f32).
            model = open_clip.create_model("ViT-B-32", pretrained=None, precision="bf16")
            model.eval()
            with torch.no_grad():
                for b in (1, 8):
                    x = img[b].to(torch.bfloat16)
                    out(f"img_b{b}_bf16w_ms", f"{med_ms(lambda: model.encode_image(x), a.reps):.2f}")
                out("txt_b8_bf16w_ms", f"{med_ms(lambda: model.encode_text(ids8), a.reps):.2f}")
            del model

    if "train" not in skip:
        from open_clip.model import CLIP
        model = CLIP(embed_dim=256,
                     vision_cfg=dict(image_size=64, patch_size=8, width=256, layers=6, head_width=64),
                     text_cfg=dict(context_length=32, vocab_size=8192, width=256, heads=4, layers=6))
        model.train()
        loss_fn = open_clip.ClipLoss()
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "positional_embedding" not in n]
        no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "positional_embedding" not in n)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.2}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
        images = torch.randn(32, 3, 64, 64, generator=torch.Generator().manual_seed(7))
        ids = make_ids(torch, 32, 32, 8192, 7)

        def step():
            opt.zero_grad(set_to_none=False)
            img_f, txt_f, scale = model(images, ids)
            loss = loss_fn(img_f, txt_f, scale)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))

        out("train_b32_f32_ms", f"{med_ms(step, a.reps):.2f}")
    try:
        import resource
        out("peak_rss_mb", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
    except Exception:
        pass
    return 0


def serve(torch, open_clip):
    """Every workload set up once; each stdin line names one, run once, answered
    as "key value" (ms; GFLOP/s for gemm; the lowest bf16-vs-fp32 feature cosine
    for cos_*). Keys as bench_clip --serve, plus *_bf16w (open_clip precision="bf16")."""
    from open_clip.model import CLIP
    from open_clip.transformer import LayerNorm, LayerNormFp32
    print(f"versions torch={torch.__version__},open_clip={oc_version()},"
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')},"
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '-')},threads={torch.get_num_threads()}", flush=True)
    m32 = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    # torch 1.13's CPU autocast fails in layer_norm (bf16 input, f32 weights): use open_clip's
    # LayerNormFp32 (same parameters; in fp32 the same computation).
    for m in m32.modules():
        if type(m) is LayerNorm:
            m.__class__ = LayerNormFp32
    m16 = open_clip.create_model("ViT-B-32", pretrained=None, precision="bf16").eval()
    img = {b: torch.randn(b, 3, 224, 224, generator=torch.Generator().manual_seed(7)) for b in (1, 8)}
    img16 = {b: x.to(torch.bfloat16) for b, x in img.items()}
    ids8 = make_ids(torch, 8, 77, 49408, 7)
    enc = {"img_b1": lambda m, x: m.encode_image(x[1]), "img_b8": lambda m, x: m.encode_image(x[8]),
           "txt_b8": lambda m, x: m.encode_text(ids8)}
    tm = CLIP(embed_dim=256, vision_cfg=dict(image_size=64, patch_size=8, width=256, layers=6, head_width=64),
              text_cfg=dict(context_length=32, vocab_size=8192, width=256, heads=4, layers=6)).train()
    loss_fn = open_clip.ClipLoss()
    dec = lambda n, p: p.ndim >= 2 and "positional_embedding" not in n
    opt = torch.optim.AdamW([{"params": [p for n, p in tm.named_parameters() if dec(n, p)], "weight_decay": 0.2},
                             {"params": [p for n, p in tm.named_parameters() if not dec(n, p)], "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
    timages = torch.randn(32, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    tids = make_ids(torch, 32, 32, 8192, 7)

    def step():
        opt.zero_grad(set_to_none=False)
        f_i, f_t, scale = tm(timages, tids)
        loss_fn(f_i, f_t, scale).backward()
        torch.nn.utils.clip_grad_norm_(tm.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            tm.logit_scale.clamp_(0, math.log(100))

    gx, gy = torch.randn(2048, 2048), torch.randn(2048, 2048)
    print("ready", flush=True)
    for line in sys.stdin:
        key = line.strip()
        if key == "quit":
            break
        t0 = time.perf_counter()
        v = None
        with torch.no_grad():
            if key == "gemm":
                torch.mm(gx, gy)
                v = 2 * 2048 ** 3 / (time.perf_counter() - t0) * 1e-9
            elif key.startswith("cos_") and key[4:] in enc:
                f32 = enc[key[4:]](m32, img)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    v = cosine_min(enc[key[4:]](m32, img), f32)
            elif key[:6] in enc:
                w, prec = key[:6], key[7:]
                if prec == "f32":
                    enc[w](m32, img)
                elif prec == "bf16":
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        enc[w](m32, img)
                elif prec == "bf16w":
                    enc[w](m16, img16)
                else:
                    w = None
                if w:
                    v = (time.perf_counter() - t0) * 1e3
        if key == "train_b32_f32":
            step()
            v = (time.perf_counter() - t0) * 1e3
        print(f"{key} unknown" if v is None else f"{key} {v:.6g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
