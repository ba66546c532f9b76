#!/usr/bin/env python3
"""Summarises bench/run_clip_bench.sh's raw log: medians over the rounds of
each side's figures, speedups (peer time / vlm time: the median of the
per-round ratios, each round's two sides measured back to back, and the ratio
of the medians), and the issue-3 targets. Standard library only."""
import collections
import statistics
import sys

vlm = collections.defaultdict(dict)   # key -> {round: value}
peer = collections.defaultdict(dict)
info = []
versions = None
rnd = 0
for line in open(sys.argv[1]):
    w = line.split()
    if not w:
        continue
    if w[0] == "ROUND":
        rnd = int(w[1])
    elif w[0] == "VLM" and len(w) == 3:
        vlm[w[1]][rnd] = float(w[2])
    elif w[0] == "PEER" and w[1] == "versions":
        versions = w[2]
    elif w[0] == "PEER" and len(w) == 3:
        try:
            peer[w[1]][rnd] = float(w[2])
        except ValueError:
            info.append(line.strip())
    elif w[0] in ("PEER", "CPU"):
        info.append(line.strip())


def med(d, k):
    return statistics.median(d[k].values()) if d.get(k) else None


def speedup(pk, vk):
    """(median of per-round peer/vlm ratios, ratio of medians) or None."""
    rounds = sorted(set(peer.get(pk, {})) & set(vlm.get(vk, {})))
    if not rounds:
        return None
    per = statistics.median(peer[pk][r] / vlm[vk][r] for r in rounds)
    return per, med(peer, pk) / med(vlm, vk)


def f(v, fmt="%.1f"):
    return "-" if v is None else fmt % v


for l in info:
    print(l)
if versions:
    print("peer:", versions)
n_rounds = len(vlm.get("img_b1_f32_ms", {}))
print(f"\nmedians over {n_rounds} rounds (each figure in a round: median of its timed calls)")
print("2048^3 fp32 GEMM, GFLOP/s: vlm %s, torch %s" % (f(med(vlm, "gemm_f32_gflops"), "%.0f"),
                                                     f(med(peer, "gemm_f32_gflops"), "%.0f")))
print()
hdr = "| workload | vlm ms | PyTorch ms | speedup (med. per round / of medians) | target | verdict |"
print(hdr)
print("|---|---|---|---|---|---|")
verdicts = []


def row(name, vk, pk, target, strict=False):
    v, p, s = med(vlm, vk), med(peer, pk), speedup(pk, vk)
    if s is None:
        verdict = "peer not measured"
    else:
        ok = s[0] > target if strict else s[0] >= target
        verdict = "met" if ok else "NOT met"
        verdicts.append((name, verdict, s[0]))
    tgt = (">%.0fx" if strict else ">=%.1fx") % target
    sp = "-" if s is None else "%.2fx / %.2fx" % s
    print(f"| {name} | {f(v)} | {f(p)} | {sp} | {tgt} | {verdict} |")


for k, name in (("img_b1", "ViT-B-32 image, batch 1"), ("img_b8", "ViT-B-32 image, batch 8"),
                ("txt_b8", "ViT-B-32 text, batch 8")):
    row(f"{name}: vlm fp32 vs torch fp32", f"{k}_f32_ms", f"{k}_f32_ms", 1.5)
for k, name in (("img_b1", "ViT-B-32 image, batch 1"), ("img_b8", "ViT-B-32 image, batch 8"),
                ("txt_b8", "ViT-B-32 text, batch 8")):
    row(f"{name}: vlm bf16 vs torch fp32", f"{k}_bf16_ms", f"{k}_f32_ms", 4.0)
    row(f"{name}: vlm bf16 vs torch bf16 autocast", f"{k}_bf16_ms", f"{k}_bf16_ms", 1.0, strict=True)
    if peer.get(f"{k}_bf16w_ms"):
        v, p, s = med(vlm, f"{k}_bf16_ms"), med(peer, f"{k}_bf16w_ms"), speedup(f"{k}_bf16w_ms", f"{k}_bf16_ms")
        print(f"| {name}: vlm bf16 vs open_clip precision=bf16 (bf16 weights; context) | {f(v)} | {f(p)} | "
              f"{'%.2fx / %.2fx' % s} | - | - |")
row("training step, small config, batch 32, fp32", "train_b32_f32_ms", "train_b32_f32_ms", 1.5)
print()
for k in ("img_b1", "img_b8", "txt_b8"):
    c = vlm.get(f"cos_{k}_bf16")
    pc = peer.get(f"cos_{k}_bf16")
    if c:
        lo = min(c.values())
        ok = "met" if lo >= 0.999 else "NOT met"
        verdicts.append((f"cosine {k}", ok, lo))
        print(f"lowest cosine(bf16 features, fp32 features) {k}: vlm {lo:.6f} ({ok}: >= 0.999)"
              + (f"; torch autocast {min(pc.values()):.6f}" if pc else ""))
for prec in ("f32", "bf16"):
    m = med(vlm, f"peak_rss_b1_{prec}_mb")
    if m is not None:
        line = f"peak RSS of `vlm forward` ViT-B-32 batch 1 ({prec}): {m:.0f} MB"
        if prec == "f32":
            ok = "met" if m < 800 else "NOT met"
            verdicts.append(("peak memory", ok, m))
            line += f" ({ok}: < 800 MB)"
        print(line)
if peer.get("peak_rss_mb"):
    print(f"(peer process peak RSS, all its workloads together: {med(peer, 'peak_rss_mb'):.0f} MB)")
print()
print("targets: %d met, %d not met" % (sum(v == "met" for _, v, _ in verdicts),
                                      sum(v != "met" for _, v, _ in verdicts)))
