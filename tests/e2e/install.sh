#!/usr/bin/env bash
# `cmake --install` into a temporary prefix installs libvlm.so, vlm.h, vlm.pc and vlm; a
# program compiled with `pkg-config --cflags --libs vlm` against them runs, and the
# library exports only the functions of vlm.h.
# Usage: install.sh BUILD_DIR SOURCE_DIR SHARED_DIR   (exit 77 when cc or pkg-config is missing)
set -u
build=$1 src=$2 shared=$3
. "$(dirname "$0")/lib.sh"
for t in cc pkg-config cmake nm; do
  command -v $t >/dev/null || { echo "SKIP: $t not found"; exit 77; }
done
make_tmp
cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/log" 2>&1
check "cmake --install exits 0" "[ $? -eq 0 ]"
check "installed files" "[ -f \"$tmp/prefix/include/vlm.h\" ] && ls \"$tmp\"/prefix/lib*/libvlm.so >/dev/null 2>&1 && \
  ls \"$tmp\"/prefix/lib*/pkgconfig/vlm.pc >/dev/null 2>&1 && [ -x \"$tmp/prefix/bin/vlm\" ]"
pc=$(dirname "$(ls "$tmp"/prefix/lib*/pkgconfig/vlm.pc | head -1)")
flags=$(PKG_CONFIG_PATH=$pc pkg-config --cflags --libs vlm)
check "pkg-config knows vlm" "[ -n \"\$flags\" ]"
libdir=$(PKG_CONFIG_PATH=$pc pkg-config --variable=libdir vlm)
san=""   # a sanitizer build's library needs the sanitizer runtime in the program too
nm -D --undefined-only "$libdir/libvlm.so" | grep -q __asan && san="-fsanitize=address,undefined"
cc -std=c11 -Wall -Wextra -Werror $san "$src/examples/embed.c" $flags -lm -Wl,-rpath,"$libdir" -o "$tmp/embed" 2>"$tmp/cc.log"
check "the example compiles against the installed header and library" "[ $? -eq 0 ]"
out=$("$tmp/embed" "$shared/fixtures/tiny-clip" "$shared/data/images/horse.png" 2>&1)
check "and runs" "grep -q 'image .*horse.png: norm 1.000000' <<<\"\$out\""
lib=$(ls "$tmp"/prefix/lib*/libvlm.so | head -1)
exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" {print $3}' | sed 's/@.*//' | sort)
declared=$(grep -oE 'VLM_API [^(]*\(' "$src/include/vlm.h" | grep -oE 'vlm_[a-z_]+\($' | tr -d '(' | sort)
check "libvlm.so exports exactly the functions of vlm.h" "[ \"\$exported\" = \"\$declared\" ]"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
