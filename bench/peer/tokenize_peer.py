"""Peer of the tokenizer bench: open_clip's tokenizer (SimpleTokenizer, context
77) over the captions of FILE, one thread.

Usage: tokenize_peer.py ROUNDS FILE
Prints "peer captions_per_s X" (median over rounds)."""
import statistics
import sys
import time

import torch
from open_clip.tokenizer import SimpleTokenizer

torch.set_num_threads(1)
rounds = int(sys.argv[1])
captions = open(sys.argv[2], encoding="utf-8", errors="replace").read().splitlines()
tok = SimpleTokenizer()
rates = []
for _ in range(rounds):
    t0 = time.perf_counter()
    tok(captions, context_length=77)
    rates.append(len(captions) / (time.perf_counter() - t0))
print(f"peer captions_per_s {statistics.median(rates):.1f}", flush=True)
