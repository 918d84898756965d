#!/usr/bin/env bash
# The AVX-512 code must run only after the CPU check. Its target is compiled with AVX-512
# flags; if it defines a function (often a weak generic specialisation) that another target
# defines too, the linker keeps one copy for both, and an AVX2-only CPU could end up running
# AVX-512 instructions. This fails when any function symbol of GramMicroKernelsAVX512's
# objects is also defined by another target's objects, in the release and debug builds.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for config in release debug; do
  dir=".build/$config"
  [ -d "$dir/GramMicroKernelsAVX512.build" ] || continue
  ours="$(mktemp)" others="$(mktemp)"
  nm --defined-only "$dir"/GramMicroKernelsAVX512.build/*.o | awk '$2 ~ /^[TW]$/ {print $3}' | sort -u > "$ours"
  { find "$dir" -name '*.o' -not -path '*GramMicroKernelsAVX512.build*' -print0 \
      | xargs -0 nm --defined-only 2>/dev/null || true; } | awk '$2 ~ /^[TW]$/ {print $3}' | sort -u > "$others"
  shared="$(comm -12 "$ours" "$others")"
  rm -f "$ours" "$others"
  if [ -n "$shared" ]; then
    echo "check-isa-isolation ($config): functions compiled for AVX-512 and defined elsewhere too:" >&2
    echo "$shared" | head -20 >&2
    status=1
  fi
done
[ $status = 0 ] && echo "check-isa-isolation: the AVX-512 target shares no function with the others"
exit $status
