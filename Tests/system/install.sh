#!/usr/bin/env bash
# scripts/install.sh into a fresh prefix, then what a user types: `ntkgram --version`,
# `man ntkgram`, and `ntkgram bu<TAB>` (bash completion, by sourcing the installed script).
set -euo pipefail
cd "$(dirname "$0")/../.."
prefix="$(mktemp -d)"; trap 'rm -rf "$prefix"' EXIT
bash scripts/install.sh "$prefix" >/dev/null
passed=0 failed=0
check() {  # description, command…
  local what="$1"; shift
  if "$@"; then passed=$((passed + 1)); else echo "install test FAILED: $what" >&2; failed=$((failed + 1)); fi
}
export PATH="$prefix/bin:$PATH"
check "ntkgram on the PATH prints its version" bash -c '[ "$(command -v ntkgram)" = "'"$prefix"'/bin/ntkgram" ] && ntkgram --version | grep -Eq "^[0-9]+\.[0-9]+\.[0-9]+$"'
check "man ntkgram shows the manual" bash -c 'MANPAGER=cat MANWIDTH=100 man ntkgram 2>/dev/null | grep -q "ntkgram build"'
check "bash completes ntkgram bu<TAB> to build" bash -c '
  source "'"$prefix"'/share/bash-completion/completions/ntkgram"
  COMP_WORDS=(ntkgram bu); COMP_CWORD=1; COMP_LINE="ntkgram bu"; COMP_POINT=${#COMP_LINE}
  _ntkgram ntkgram bu ntkgram
  [ "${COMPREPLY[*]}" = "build" ]'
check "bash completes build --aga<TAB> to --against" bash -c '
  source "'"$prefix"'/share/bash-completion/completions/ntkgram"
  COMP_WORDS=(ntkgram build --aga); COMP_CWORD=2; COMP_LINE="ntkgram build --aga"; COMP_POINT=${#COMP_LINE}
  _ntkgram ntkgram --aga build
  [ "${COMPREPLY[*]}" = "--against" ]'
check "ntkgram-plot is installed and runs with the test venv" bash -c '[ -x "'"$prefix"'/bin/ntkgram-plot" ] && "${NTKGRAM_PLOT_PYTHON:-python3}" "'"$prefix"'/bin/ntkgram-plot" --help | grep -q -- --dynamics'
check "the zsh completion is installed" grep -q "#compdef ntkgram" "$prefix/share/zsh/site-functions/_ntkgram"
echo "install: $passed passed, $failed failed"
[ "$failed" = 0 ]
