#!/usr/bin/env bash
# Run HERE (a Debian 12 machine with the registry) before a device run: the GPU
# machine has CUDA but not Debian's -dev packages and no registry, so the
# libraries vlm builds against travel with the working tree as .deb files in
# .debs/ (git-ignored; name it in the device tool's carry list).
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .debs
cd .debs
apt-get download libdnnl2 libdnnl-dev libcjson1 libcjson-dev libutf8proc2 libutf8proc-dev \
  ocl-icd-libopencl1 libpng-dev libpng16-16 libjpeg62-turbo libjpeg62-turbo-dev zlib1g-dev \
  libwebp-dev libwebp7 libwebpdemux2 libwebpmux3 2>&1 | tail -n 2
ls -la
# cuDNN's headers (9.19 here), in case the GPU machine has only an older set or none:
# tests/gpu/run.sh builds the cuDNN attention against them; the library is the machine's.
if [ -e /usr/local/cuda/include/cudnn_graph.h ]; then
  mkdir -p cudnn/include
  cp /usr/local/cuda/include/cudnn*.h cudnn/include/
  echo "cuDNN headers: $(ls cudnn/include | wc -l) files in .debs/cudnn/include"
fi
