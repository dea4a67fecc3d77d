#!/usr/bin/env bash
# Install the project into .venv (the CPU build of torch 2.13.0 first, so pip never pulls a CUDA build), check that
# the generated protobuf code matches proto/, and run the tests:
#   bash scripts/test.sh          everything (what CI runs)
#   bash scripts/test.sh unit     the fast part: no swarms of node processes, no Docker, no network faults or NAT
#   bash scripts/test.sh swarm    the rest
# Anything after the part goes to pytest (say, -k name, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
part=all
case "${1:-}" in
  unit|swarm|all) part=$1; shift ;;
esac
python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q torch==2.13.0
pip install -q -e '.[test]'
bash scripts/gen_proto.sh --check
slow="swarm or deploy or faults or wan or nat"
case "$part" in
  unit) python -m pytest -q --durations=15 -m "not ($slow) and not fuzz" "$@" ;;
  swarm) python -m pytest -q --durations=15 -m "($slow) and not fuzz" "$@" ;;
  all) python -m pytest -q --durations=15 "$@" ;;
esac
