#!/usr/bin/env bash
# `vlm train` across MPI ranks (mpirun): 2 ranks x batch 4 train the model that one
# process trains with batch 8 (the same global batches, crops and loss: per-step
# losses and the final val loss agree to rounding); rank 0 alone writes the run;
# the same for SigLIP (--siglip), CoCa, --accum-freq and --lock-image; a resume across ranks continues the run;
# a failing rank stops the others. Usage: train_mpi.sh VLM_BINARY
# Exit 77 (a visible skip) when vlm was built without MPI or mpirun is missing.
set -u
vlm=$1
. "$(dirname "$0")/lib.sh"
if ! "$vlm" version | grep -q '^ranks: MPI'; then
  echo "SKIP: this vlm was built without MPI (install libopenmpi-dev, rerun cmake)"
  exit 77
fi
if ! command -v mpirun >/dev/null; then
  echo "SKIP: no mpirun (install openmpi-bin)"
  exit 77
fi
make_tmp
# Open MPI refuses root unless told; --oversubscribe: 2 ranks on however many cores CI has
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none   # containers without ptrace
export VLM_THREADS=1
# Under AddressSanitizer the MPI runtime's own allocations (libmpi, libopen-pal and the
# plugins it unloads) show as leaks at exit: leak checking is off for the ranks, every
# other ASan / UBSan check stays on.
mpi() { ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" timeout 300 mpirun -np "$@"; }
common=(--device cpu --train-data shapes:64 --model tiny --tokenizer train:600 --lr 1e-3 --warmup 3 --seed 3
        --val-data shapes:val:16 --val-frequency 1 --zeroshot-frequency 0 --workers 1 --logs "$tmp/runs"
        --log-every-n-steps 1)
losses() { grep '"type": "train"' "$1/metrics.jsonl" | grep -o '"loss": [-0-9.e]*' | cut -d' ' -f2; }
# the final evaluation's retrieval mean ranks (over all 16 val samples: not batch-dependent,
# as the val loss, a mean of per-batch losses, is)
val_ranks() { grep '"type": "eval"' "$1/metrics.jsonl" | tail -1 | grep -o '_mean_rank": [-0-9.e]*' | cut -d' ' -f2; }
# the largest |a - b| over two columns of numbers, and whether both have n of them
close() {  # close FILE_A FILE_B N TOL
  paste "$1" "$2" | awk -v n="$3" -v tol="$4" '{ d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d; c++ }
    END { if (c != n || m > tol) { printf "  %d values (want %d), max difference %g (tolerance %g)\n", c, n, m, tol; exit 1 } }'
}

# 12 steps cross the end of epoch 0 (8 global batches of 8)
"$vlm" train "${common[@]}" --batch-size 8 --steps 12 --name one >"$tmp/one.out" 2>"$tmp/one.err"
check "one process, batch 8: exit 0" "[ $? -eq 0 ]"
mpi 2 "$vlm" train "${common[@]}" --batch-size 4 --steps 12 --name two >"$tmp/two.out" 2>"$tmp/two.err"
rc=$?
check "2 ranks x batch 4: exit 0" "[ $rc -eq 0 ] || { cat $tmp/two.err; false; }"
check "... the run line names the ranks" "grep -q 'steps of 4 x 1 x 2 ranks samples' $tmp/two.err"
check "... one run line, one done line (rank 0 reports)" \
  "[ \$(grep -c '^run ' $tmp/two.err) -eq 1 ] && [ \$(grep -c '^done: step 12' $tmp/two.err) -eq 1 ]"
losses "$tmp/runs/one" >"$tmp/l1"
losses "$tmp/runs/two" >"$tmp/l2"
check "the same loss at each of the 12 steps (global batch 8 either way)" "close $tmp/l1 $tmp/l2 12 2e-5"
val_ranks "$tmp/runs/one" >"$tmp/v1"
val_ranks "$tmp/runs/two" >"$tmp/v2"
check "the same final retrieval mean ranks (image->text, text->image)" "close $tmp/v1 $tmp/v2 2 1e-9"
check "metrics.jsonl written once (12 train lines)" "[ \$(grep -c '\"type\": \"train\"' $tmp/runs/two/metrics.jsonl) -eq 12 ]"
check "checkpoints from rank 0: epoch_1 and latest at step 12" \
  "[ -d $tmp/runs/two/checkpoints/epoch_1 ] && [ \"\$(readlink $tmp/runs/two/checkpoints/latest)\" = step_12 ]"

# SigLIP (--siglip): each rank scores its images against every rank's texts (open_clip's
# SigLipLoss with its neighbour exchange), so 2 ranks x 4 train what one process does with 8
"$vlm" train "${common[@]}" --siglip --batch-size 8 --steps 6 --name sone >/dev/null 2>&1
check "SigLIP, one process, batch 8: exit 0" "[ $? -eq 0 ]"
mpi 2 "$vlm" train "${common[@]}" --siglip --batch-size 4 --steps 6 --name stwo >/dev/null 2>"$tmp/stwo.err"
check "SigLIP, 2 ranks x batch 4: exit 0" "[ $? -eq 0 ] || { cat $tmp/stwo.err; false; }"
losses "$tmp/runs/sone" >"$tmp/sl1"
losses "$tmp/runs/stwo" >"$tmp/sl2"
check "SigLIP: the same loss at each of the 6 steps" "close $tmp/sl1 $tmp/sl2 6 2e-5"

# On a GPU (or the emulated one of the test build) each rank trains on its device and the
# collectives go through host buffers: the same losses as one CPU process.
if "$vlm" version | grep -q '^gpu: \(emulated GPU\|.*(sm_[0-9]\)'; then
  gpu=("${common[@]}")
  gpu[1]=cuda
  mpi 2 "$vlm" train "${gpu[@]}" --batch-size 4 --steps 12 --name twogpu >/dev/null 2>"$tmp/g.err"
  check "2 ranks on the GPU: exit 0" "[ $? -eq 0 ] || { cat $tmp/g.err; false; }"
  losses "$tmp/runs/twogpu" >"$tmp/lg"
  check "... the same 12 losses as one CPU process" "close $tmp/l1 $tmp/lg 12 1e-3"
else
  echo "note: no GPU: the 2-rank GPU run is not made here"
fi

# another rank count on resume: the data position is the samples every rank consumed, so
# 2 ranks x 4 stopped at step 5 and resumed in one process x 8 (and the other way round)
# follow the straight run
mpi 2 "$vlm" train "${common[@]}" --batch-size 4 --steps 12 --name w21 --stop-at-step 5 >/dev/null 2>&1
"$vlm" train "${common[@]}" --batch-size 8 --name w21 --resume latest >/dev/null 2>"$tmp/w21.err"
check "2 ranks -> 1 process: exit 0, the position converted" \
  "[ $? -eq 0 ] && grep -q '1 rank of --batch-size 8, the checkpoint.s 2 of 4: its data position (epoch 0, 40 samples) becomes batch 5 of each rank' $tmp/w21.err"
losses "$tmp/runs/w21" >"$tmp/lw21"
check "... the same 12 losses as one process all along" "close $tmp/l1 $tmp/lw21 12 2e-5"
"$vlm" train "${common[@]}" --batch-size 8 --steps 12 --name w12 --stop-at-step 5 >/dev/null 2>&1
mpi 2 "$vlm" train "${common[@]}" --batch-size 4 --name w12 --resume latest >/dev/null 2>"$tmp/w12.err"
check "1 process -> 2 ranks: exit 0" "[ $? -eq 0 ] || { cat $tmp/w12.err; false; }"
losses "$tmp/runs/w12" >"$tmp/lw12"
check "... the same 12 losses" "close $tmp/l1 $tmp/lw12 12 2e-5"
mpi 2 "$vlm" train "${common[@]}" --batch-size 3 --steps 20 --name w21 --resume latest >/dev/null 2>"$tmp/w3.err"
check "... 2 ranks x 3 after one process x 8 (32 samples into the epoch): refused, said" \
  "[ $? -ne 0 ] && grep -q '2 ranks of --batch-size 3 (6 a batch) do not divide 32' $tmp/w3.err"

# CoCa: the contrastive part over the global batch, the caption CE over every rank's targets
"$vlm" train "${common[@]}" --model coca-tiny --batch-size 8 --steps 6 --name coca1 >/dev/null 2>"$tmp/c1.err"
check "CoCa, one process x 8: exit 0" "[ $? -eq 0 ]"
mpi 2 "$vlm" train "${common[@]}" --model coca-tiny --batch-size 4 --steps 6 --name coca2 >/dev/null 2>"$tmp/c2.err"
check "CoCa, 2 ranks x 4: exit 0" "[ $? -eq 0 ] || { cat $tmp/c2.err; false; }"
losses "$tmp/runs/coca1" >"$tmp/lc1"
losses "$tmp/runs/coca2" >"$tmp/lc2"
check "... the same CoCa loss (contrastive + caption) at each of the 6 steps" "close $tmp/lc1 $tmp/lc2 6 1e-4"
mpi 2 "$vlm" train "${common[@]}" --model coca-tiny --batch-size 2 --accum-freq 2 --steps 6 --name coca3 >/dev/null 2>"$tmp/c3.err"
losses "$tmp/runs/coca3" >"$tmp/lc3"
check "... and for 2 ranks x --accum-freq 2 x batch 2" "close $tmp/lc1 $tmp/lc3 6 1e-4"
val_ranks "$tmp/runs/coca1" >"$tmp/vc1"
val_ranks "$tmp/runs/coca2" >"$tmp/vc2"
check "... and the same final retrieval mean ranks" "close $tmp/vc1 $tmp/vc2 2 1e-9"

# a stop at step 5 and a resume on 2 ranks follow the same path
mpi 2 "$vlm" train "${common[@]}" --batch-size 4 --steps 12 --name res --stop-at-step 5 >/dev/null 2>"$tmp/r1.err"
check "2 ranks, stopped at step 5: exit 0" "[ $? -eq 0 ] && [ \"\$(readlink $tmp/runs/res/checkpoints/latest)\" = step_5 ]"
mpi 2 "$vlm" train "${common[@]}" --batch-size 4 --name res --resume latest >/dev/null 2>"$tmp/r2.err"
check "... resumed on 2 ranks: exit 0 at step 12" \
  "[ $? -eq 0 ] && grep -q 'resuming .* at step 5' $tmp/r2.err && [ \"\$(readlink $tmp/runs/res/checkpoints/latest)\" = step_12 ]"
losses "$tmp/runs/res" >"$tmp/l3"
check "... the same 12 losses as one process" "close $tmp/l1 $tmp/l3 12 2e-5"

# --accum-freq across ranks (2 ranks x 2 micro-batches of 2: the same global batch of 8), and
# LiT (--lock-image: the image features gathered, only the text tower trained)
mpi 2 "$vlm" train "${common[@]}" --batch-size 2 --accum-freq 2 --steps 12 --name acc >/dev/null 2>"$tmp/a.err"
check "2 ranks x --accum-freq 2 x batch 2: exit 0" "[ $? -eq 0 ] || { cat $tmp/a.err; false; }"
losses "$tmp/runs/acc" >"$tmp/la"
check "... the same 12 losses as one process x 8" "close $tmp/l1 $tmp/la 12 2e-5"
"$vlm" train "${common[@]}" --batch-size 8 --steps 6 --lock-image --name lit1 >/dev/null 2>&1
mpi 2 "$vlm" train "${common[@]}" --batch-size 4 --steps 6 --lock-image --name lit2 >/dev/null 2>"$tmp/lit.err"
check "--lock-image on 2 ranks: exit 0" "[ $? -eq 0 ] || { cat $tmp/lit.err; false; }"
losses "$tmp/runs/lit1" >"$tmp/ll1"
losses "$tmp/runs/lit2" >"$tmp/ll2"
check "... the same 6 losses as one process" "close $tmp/ll1 $tmp/ll2 6 2e-5"

# ranks started by hand with different settings (mpirun's A : B form) are refused, named
timeout 300 env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" mpirun \
  -np 1 "$vlm" train "${common[@]}" --batch-size 4 --steps 2 --name mix : \
  -np 1 "$vlm" train "${common[@]}" --batch-size 2 --steps 2 --name mix >/dev/null 2>"$tmp/e.err"
rc=$?
check "ranks with different --batch-size: refused (exit non-zero, not the timeout)" \
  "[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q 'started with different settings' $tmp/e.err"

# rank 0 failing (the run directory exists) takes rank 1 down with it instead of leaving it waiting
mpi 2 "$vlm" train "${common[@]}" --batch-size 4 --steps 2 --name two >/dev/null 2>"$tmp/e.err"
rc=$?
check "a failing rank 0 stops every rank (exit non-zero, not the timeout)" \
  "[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q 'the run directory exists' $tmp/e.err"

echo "train_mpi: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
