#!/usr/bin/env bash
# The README as a new user meets it: `bash scripts/quickstart.sh`, its last two lines checked
# (`test accuracy: 0.NNNN`, at least 0.80 on its 3,000 / 1,000 images; `learning curve: PATH`,
# an existing, valid PNG), then every ```sh block of README.md in order, each run as one bash
# script (set -euo pipefail) from the repository's root; the first non-zero exit fails the test
# and names the block. Blocks fenced with another info string (```console: installing, the
# quickstart itself, the whole test suite) are shown to readers and not run here.
#
#   bash Tests/system/readme.sh            (scripts/test.sh runs it after the installation test)
#
# As the README assumes, `ntkgram` is on the PATH (here the release build) and `ntkgram-plot`
# runs scripts/ntkgram-plot.py (with NTKGRAM_PLOT_PYTHON, default python3: needs numpy, h5py,
# matplotlib). cluster/local.sh uses that binary (NTKGRAM_BIN) instead of building its own
# native one, and mpirun may run as root (OMPI_ALLOW_RUN_AS_ROOT). Every output of the README's
# examples is under runs/quickstart/, which is removed first so that no example meets its own
# earlier output.
#
# A ```sh block that installs, runs the quickstart or the test suite, or submits to Slurm
# (scripts/install.sh, scripts/quickstart.sh, scripts/test.sh, sbatch) is refused before
# anything runs: it must be fenced ```console. The test also refuses to start inside itself.
#
#   bash Tests/system/readme.sh [MARKDOWN]   (default README.md; another file checks the test itself)
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
readme="$(realpath "${1:-README.md}")"
if [ -n "${NTKGRAM_README_TEST:-}" ]; then echo "readme test FAILED: started from inside a README test (a block runs the test suite?)" >&2; exit 1; fi
export NTKGRAM_README_TEST=1
log="$(mktemp -d)"; trap 'rm -rf "$log"' EXIT

# 0. The blocks, and none that must not run here.
awk -v dir="$log" '
  /^```/ && inside { inside = 0; close(file); next }
  /^```sh[ \t]*$/ { inside = 1; n++; file = sprintf("%s/block-%02d.sh", dir, n); printf "" > file; line[n] = NR; next }
  inside { print > file }
  END { for (i = 1; i <= n; i++) print i, line[i] > (dir "/blocks") }' "$readme"
[ -s "$log/blocks" ] || { echo "readme test FAILED: $readme has no \`\`\`sh block" >&2; exit 1; }
if bad="$(grep -lE 'scripts/(install|quickstart|test)\.sh|(^|[^[:alnum:]_])sbatch([^[:alnum:]_]|$)' "$log"/block-*.sh)"; then
  for f in $bad; do
    n="$(basename "$f" .sh)"; n="${n#block-}"; n=$((10#$n))
    echo "readme test FAILED: the \`\`\`sh block at $(basename "$readme") line $(awk -v n="$n" '$1 == n { print $2 }' "$log/blocks") installs, runs the quickstart or the tests, or submits a job: fence it \`\`\`console" >&2
  done
  exit 1
fi
rm -rf runs/quickstart

# 1. The quickstart and its last two lines.
bash scripts/quickstart.sh > "$log/quickstart.out" 2> "$log/quickstart.err" || {
  tail -n 20 "$log/quickstart.err" >&2; echo "readme test FAILED: scripts/quickstart.sh exited non-zero" >&2; exit 1; }
accuracy_line="$(tail -n 2 "$log/quickstart.out" | head -n 1)"
png_line="$(tail -n 1 "$log/quickstart.out")"
failed=0
fail() { echo "readme test FAILED: $*" >&2; failed=1; }
if [[ "$accuracy_line" =~ ^test\ accuracy:\ (0\.[0-9]{4})$ ]]; then
  awk -v a="${BASH_REMATCH[1]}" 'BEGIN { exit !(a >= 0.80) }' || fail "the quickstart's test accuracy ${BASH_REMATCH[1]} is below 0.80"
else
  fail "the quickstart's second-to-last line is '$accuracy_line', not 'test accuracy: 0.NNNN'"
fi
if [[ "$png_line" =~ ^learning\ curve:\ (/.+\.png)$ ]]; then
  png="${BASH_REMATCH[1]}"
  if [ ! -s "$png" ]; then
    fail "the quickstart's picture $png does not exist"
  else
    # A PNG: the signature, an IHDR chunk first with a non-zero size, an IEND chunk last.
    [ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$png does not start with the PNG signature"
    [ "$(head -c 16 "$png" | tail -c 8 | od -An -tx1 | tr -d ' \n')" = 0000000d49484452 ] || fail "$png does not start with an IHDR chunk"
    [ "$(head -c 24 "$png" | tail -c 8 | od -An -tu1 | tr -s ' ' '\n' | grep -c '^[1-9]')" -ge 2 ] || fail "$png has an empty size"
    [ "$(tail -c 12 "$png" | od -An -tx1 | tr -d ' \n')" = 0000000049454e44ae426082 ] || fail "$png does not end with an IEND chunk"
  fi
else
  fail "the quickstart's last line is '$png_line', not 'learning curve: /absolute/path.png'"
fi
[ "$failed" = 0 ] || exit 1

# 2. Every ```sh block of the README, in order.
mkdir -p "$log/bin"
cat > "$log/bin/ntkgram-plot" <<PLOT
#!/usr/bin/env bash
exec "${NTKGRAM_PLOT_PYTHON:-python3}" "$root/scripts/ntkgram-plot.py" "\$@"
PLOT
chmod +x "$log/bin/ntkgram-plot"
export PATH="$log/bin:$root/.build/release:$PATH" NTKGRAM_BIN="$root/.build/release/ntkgram"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
blocks=0
while read -r n at; do
  script="$log/$(printf 'block-%02d.sh' "$n")"
  start=$SECONDS
  if ! bash -euo pipefail "$script" > "$log/out" 2>&1 < /dev/null; then
    tail -n 15 "$log/out" >&2
    echo "readme test FAILED: the \`\`\`sh block at $(basename "$readme") line $at exited non-zero:" >&2
    sed 's/^/    /' "$script" >&2
    exit 1
  fi
  blocks=$((blocks + 1))
  echo "$(basename "$readme") line $at: ok ($((SECONDS - start)) s)"
done < "$log/blocks"
echo "readme: the quickstart's last lines and $blocks sh blocks passed"
