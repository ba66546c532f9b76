#!/usr/bin/env python3
"""Interleaves single timed calls of vlm (bench_clip --serve) and of the
PyTorch peer (bench/peer/clip_peer.py --serve), workload by workload, and
prints medians, speedups and the issue-3 targets. Standard library only.

The machine's speed drifts by up to 2x over tens of seconds, so whole rounds of
each side (tens of seconds apart) give unreliable ratios; here the calls that
a ratio compares are made back to back (within ~1 s), the order alternating,
and the speedup is the median of those per-group ratios. Run through
bench/run_clip_bench.sh."""
import argparse
import statistics
import subprocess
import sys


class Side:
    def __init__(self, name, cmd):
        self.name = name
        self.info = []
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError(f"{name} exited before it was ready: {' '.join(self.info)[-300:]}")
            line = line.strip()
            if line == "ready":
                break
            self.info.append(line)

    def ask(self, key):
        self.p.stdin.write(key + "\n")
        self.p.stdin.flush()
        w = self.p.stdout.readline().split()
        if len(w) != 2 or w[0] != key or w[1] == "unknown":
            raise RuntimeError(f"{self.name}: bad answer to {key}: {w}")
        return float(w[1])

    def close(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
            self.p.wait(timeout=30)
        except Exception:
            self.p.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vlm", required=True, help="bench_clip")
    ap.add_argument("--peer", nargs="*", default=None, help="peer command (python clip_peer.py ...)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--peak-f32", type=float, default=None)
    ap.add_argument("--peak-bf16", type=float, default=None)
    ap.add_argument("--f32-only", action="store_true",
                    help="only the fp32 workloads (where the CPU has no bf16 GEMM kernels, the bf16 ones take "
                         "most of the time on both sides)")
    a = ap.parse_args()

    vlm = Side("vlm", [a.vlm, "--serve", "--threads", str(a.threads)])
    peer = None
    if a.peer:
        try:
            peer = Side("peer", a.peer + ["--serve", "--threads", str(a.threads)])
        except Exception as e:
            print(f"PEER skipped: {e}")
    else:
        print("PEER skipped: no peer (run bench/peer/setup.sh)")
    if peer:
        for l in peer.info:
            print("peer:", l)

    groups = ["gemm", "img_b1", "img_b8", "txt_b8", "train"]
    keys = {"gemm": (["gemm"], ["gemm"]),
            "train": (["train_b32_f32"], ["train_b32_f32"])}
    for w in ("img_b1", "img_b8", "txt_b8"):
        keys[w] = ([f"{w}_f32", f"{w}_bf16"], [f"{w}_f32", f"{w}_bf16", f"{w}_bf16w"])
        if a.f32_only:
            keys[w] = ([f"{w}_f32"], [f"{w}_f32"])
    V = {}  # (side, key) -> [values per rep]
    # warm-up: two calls of everything on both sides
    for g in groups:
        for _ in range(2):
            for k in keys[g][0]:
                vlm.ask(k)
            if peer:
                for k in keys[g][1]:
                    peer.ask(k)
    for r in range(a.reps):
        print(f"rep {r + 1}/{a.reps}", file=sys.stderr, flush=True)
        for gi, g in enumerate(groups):
            order = [("vlm", vlm, keys[g][0])] + ([("peer", peer, keys[g][1])] if peer else [])
            if (r + gi) % 2:
                order.reverse()
            for name, side, ks in order:
                for k in ks:
                    V.setdefault((name, k), []).append(side.ask(k))
    cos = {}
    for w in () if a.f32_only else ("img_b1", "img_b8", "txt_b8"):
        cos[("vlm", w)] = vlm.ask(f"cos_{w}")
        if peer:
            cos[("peer", w)] = peer.ask(f"cos_{w}")
    vlm.close()
    if peer:
        peer.close()

    def med(side, k):
        v = V.get((side, k))
        return statistics.median(v) if v else None

    def ratio(pk, vk):  # median over reps of peer time / vlm time (same group, back to back)
        if not V.get(("peer", pk)):
            return None
        return statistics.median(p / v for p, v in zip(V[("peer", pk)], V[("vlm", vk)]))

    fmt = lambda x, f="%.1f": "-" if x is None else f % x
    print(f"\n{a.reps} interleaved reps per workload after 2 warm-up calls; figures are medians; "
          f"speedup = median over reps of (PyTorch time / vlm time), the two measured back to back")
    gv, gp = med("vlm", "gemm"), med("peer", "gemm")
    print(f"2048^3 fp32 GEMM: vlm {fmt(gv, '%.0f')} GFLOP/s, torch.mm {fmt(gp, '%.0f')} GFLOP/s"
          + (f" (vlm/torch {statistics.median(v / p for v, p in zip(V[('vlm', 'gemm')], V[('peer', 'gemm')])):.2f}x)"
             if gp else ""))
    print()
    print("| workload | vlm | vlm ms | PyTorch | PyTorch ms | speedup | target | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    verdicts = []

    def row(label, vk, vlab, pk, plab, target=None, strict=False):
        s = ratio(pk, vk)
        verdict, tgt = "-", "-"
        if target is not None:
            tgt = (">%gx" if strict else ">=%gx") % target
            if s is None:
                verdict = "peer not measured"
            else:
                verdict = "met" if (s > target if strict else s >= target) else "NOT met"
                verdicts.append(verdict)
        print(f"| {label} | {vlab} | {fmt(med('vlm', vk))} | {plab} | {fmt(med('peer', pk))} | "
              f"{fmt(s, '%.2fx')} | {tgt} | {verdict} |")

    names = {"img_b1": "ViT-B-32 image, batch 1", "img_b8": "ViT-B-32 image, batch 8",
             "txt_b8": "ViT-B-32 text, batch 8"}
    for w, n in names.items():
        row(n, f"{w}_f32", "fp32", f"{w}_f32", "fp32", 1.5)
    for w, n in () if a.f32_only else names.items():
        row(n, f"{w}_bf16", "bf16", f"{w}_f32", "fp32", 4.0)
        row(n, f"{w}_bf16", "bf16", f"{w}_bf16", "bf16 autocast", 1.0, strict=True)
        row(n, f"{w}_bf16", "bf16", f"{w}_bf16w", "bf16 weights (context)")
    row("training step, small, batch 32", "train_b32_f32", "fp32", "train_b32_f32", "fp32", 1.5)
    print()
    if a.f32_only:
        print("(--f32-only: the bf16 workloads and their targets were not measured)")
    for w in () if a.f32_only else names:
        c = cos[("vlm", w)]
        ok = "met" if c >= 0.999 else "NOT met"
        verdicts.append(ok)
        pc = cos.get(("peer", w))
        print(f"lowest cosine(bf16 features, fp32 features), {w}: vlm {c:.6f} ({ok}: >= 0.999)"
              + (f"; torch autocast {pc:.6f}" if pc is not None else ""))
    if a.peak_f32 is not None:
        ok = "met" if a.peak_f32 < 800 else "NOT met"
        verdicts.append(ok)
        print(f"peak RSS, `vlm forward` ViT-B-32 batch 1: fp32 {a.peak_f32:.0f} MB ({ok}: < 800 MB)"
              + (f", bf16 {a.peak_bf16:.0f} MB" if a.peak_bf16 is not None else ""))
    print(f"\ntargets: {verdicts.count('met')} met, {len(verdicts) - verdicts.count('met')} not met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
