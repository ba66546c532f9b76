#!/bin/sh
# Prints the OPENBLAS_CORETYPE that gives Debian's OpenBLAS 0.3.21 the right kernels for
# this CPU, for the PyTorch peer (bench/run_*_bench.sh use it unless OPENBLAS_CORETYPE is
# set): it does not recognise every recent CPU and then falls back to slow generic kernels.
#   AVX-512 (Skylake-X and later Intel, AMD Zen 4): SKYLAKEX
#   AVX2 + FMA on AMD (Zen 1-3): ZEN;  on Intel (Haswell and later, no AVX-512): HASWELL
# Nothing is printed on other CPUs (OpenBLAS picks its own).
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
vendor=$(grep -m1 '^vendor_id' /proc/cpuinfo 2>/dev/null)
has() { case " $flags " in *" $1 "*) return 0 ;; esac; return 1; }
if has avx512f && has avx512bw && has avx512vl; then
  echo SKYLAKEX
elif has avx2 && has fma; then
  case "$vendor" in *AuthenticAMD*) echo ZEN ;; *) echo HASWELL ;; esac
fi
