#!/usr/bin/env bash
# Installs ntkgram like a tool: the release binary, its man page and bash/zsh completions.
#
#   bash scripts/install.sh [PREFIX]        (default /usr/local; run as root for system prefixes)
#
# Installs PREFIX/bin/ntkgram, PREFIX/share/man/man1/ntkgram.1 (from swift-argument-parser's
# manual plugin), PREFIX/share/bash-completion/completions/ntkgram and
# PREFIX/share/zsh/site-functions/_ntkgram (from `ntkgram --generate-completion-script`), and
# PREFIX/bin/ntkgram-plot (scripts/ntkgram-plot.py: needs python3 with numpy, h5py, matplotlib).
# Installs the system packages first (scripts/install-deps.sh). NTKGRAM_TARGET_CPU works as
# for scripts/build-release.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="${1:-/usr/local}"
bash scripts/install-deps.sh
# The manual plugin builds the package in release mode itself: run it first, then the release
# build with this project's flags, so that the binary installed is the one build-release.sh makes.
swift package generate-manual >/dev/null
manual=".build/plugins/GenerateManual/outputs/ntkgram/ntkgram.1"
[ -s "$manual" ] || { echo "install: the manual plugin wrote no $manual" >&2; exit 1; }
bash scripts/build-release.sh >/dev/null
binary=".build/release/ntkgram"
install -d "$prefix/bin" "$prefix/share/man/man1" "$prefix/share/bash-completion/completions" "$prefix/share/zsh/site-functions"
install -m 0755 "$binary" "$prefix/bin/ntkgram"
install -m 0755 scripts/ntkgram-plot.py "$prefix/bin/ntkgram-plot"
install -m 0644 "$manual" "$prefix/share/man/man1/ntkgram.1"
"$prefix/bin/ntkgram" --generate-completion-script bash > "$prefix/share/bash-completion/completions/ntkgram"
"$prefix/bin/ntkgram" --generate-completion-script zsh > "$prefix/share/zsh/site-functions/_ntkgram"
echo "installed ntkgram $("$prefix/bin/ntkgram" --version) in $prefix (binary, man page, bash and zsh completions, ntkgram-plot)"
