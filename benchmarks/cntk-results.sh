#!/usr/bin/env bash
# Fashion-MNIST accuracy of convolutional kernels beside the FC NTK at the same N: build (2
# ranks), `plan`'s estimate for the same job, solve (block CG, Nyström), test accuracy.
#
#   bash benchmarks/cntk-results.sh [N_FLATTEN] [N_POOLED] [M_FLATTEN] [M_POOLED]   (default 3000 150 1000 150)
#
# Networks: "flatten" = five [conv 3×3 SAME, relu] layers, flatten, dense (same-position
# covariances, CNN-V); "myrtle5" = the preset (pooling: full pixel-pair covariances); "fc" =
# the depth-3 ReLU NTK of jobs/. Prints one markdown row per (network, N).
set -euo pipefail
cd "$(dirname "$0")/.."
nf="${1:-3000}" np="${2:-150}" mf="${3:-1000}" mp="${4:-150}"
bin="$PWD/.build/release/ntkgram"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fm=/usr/share/datasets/fashion-mnist
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
conv='{"type":"conv","width":1,"filter":[3,3],"padding":"SAME","W_std":1.4142135623730951,"b_std":0.1},{"type":"relu"}'
flatten="[$conv,$conv,$conv,$conv,$conv,{\"type\":\"flatten\"},{\"type\":\"dense\",\"width\":1,\"W_std\":1.4142135623730951,\"b_std\":0.1}]"
now() { date +%s.%N; }
echo "| network | N train | M test | plan estimate | build (2 ranks) | solve | test accuracy |"
echo "|---|---|---|---|---|---|---|"
run() {  # label, N, M, network flags…
  local label="$1" n="$2" m="$3"; shift 3
  local data=(--train "$fm/train-images-idx3-ubyte.gz" --train-labels "$fm/train-labels-idx1-ubyte.gz" --train-limit "$n"
              --test "$fm/t10k-images-idx3-ubyte.gz" --test-labels "$fm/t10k-labels-idx1-ubyte.gz" --test-limit "$m")
  local tile=$(( n >= 2000 ? 256 : 16 ))
  local estimate; estimate="$("$bin" plan --ranks 2 --train-count "$n" --test-count "$m" --input-shape 28,28,1 --tile "$tile" "$@" \
      | sed -n 's/^estimated wall time: \([^ ]* [a-z]*\).*/\1/p')"
  local t0 t1 t2
  t0=$(now)
  mpirun --oversubscribe --bind-to none -np 2 "$bin" build "${data[@]}" "$@" --tile "$tile" --out "$work/$label.h5" --quiet
  t1=$(now)
  mpirun --oversubscribe --bind-to none -np 2 "$bin" solve "$work/$label.h5" --ridge 1e-4 --rank "$(( n < 1000 ? n / 2 : 1000 ))" \
    --tol 1e-6 --out "$work/$label-sol.h5" --metrics "$work/$label.json" --force --quiet
  t2=$(now)
  local acc; acc="$(python3 -c "import json; print('%.4f' % json.load(open('$work/$label.json'))['results'][0]['accuracy'])")"
  printf '| %s | %d | %d | %s | %.0f s | %.0f s | %s |\n' "$label" "$n" "$m" "$estimate" \
    "$(awk "BEGIN{print $t1 - $t0}")" "$(awk "BEGIN{print $t2 - $t1}")" "$acc"
  rm -f "$work/$label.h5" "$work/$label-sol.h5"
}
run flatten "$nf" "$mf" --layers "$flatten"
run fc "$nf" "$mf"
run myrtle5 "$np" "$mp" --preset myrtle5
run fc "$np" "$mp"
