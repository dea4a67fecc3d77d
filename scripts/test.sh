#!/usr/bin/env bash
# Install the project into .venv (the CPU build of torch 2.13.0 first, so pip never pulls a CUDA build),
# check that the generated protobuf code matches proto/, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q torch==2.13.0
pip install -q -e '.[test]'
bash scripts/gen_proto.sh --check
python -m pytest -q --durations=15 "$@"
