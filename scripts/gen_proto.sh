#!/usr/bin/env bash
# Regenerate the Python code for every .proto in proto/ into demo_node/wire/proto/ with grpcio-tools
# (pinned in pyproject's test extra, so the output is byte-for-byte reproducible).
# With --check, regenerate into a temporary folder and fail if it differs from what is checked in.
set -euo pipefail
cd "$(dirname "$0")/.."
out=demo_node/wire/proto
dest=$out
if [ "${1:-}" = "--check" ]; then
  dest=$(mktemp -d)
  trap 'rm -rf "$dest"' EXIT
fi
python -m grpc_tools.protoc -Iproto --python_out="$dest" --pyi_out="$dest" --grpc_python_out="$dest" proto/*.proto
# protoc writes `import x_pb2` for imports between generated files; make them package-relative
for f in "$dest"/*_pb2.py "$dest"/*_pb2_grpc.py; do
  [ -e "$f" ] || continue
  sed -i -E 's/^import (demo_node_[a-z_]+_pb2) as/from . import \1 as/' "$f"
done
# a _grpc.py file for a .proto without services holds nothing: drop it
for f in "$dest"/*_pb2_grpc.py; do
  [ -e "$f" ] || continue
  grep -q "class .*Stub" "$f" || rm -f "$f"
done
if [ "$dest" != "$out" ]; then
  for f in "$dest"/*; do
    name=$(basename "$f")
    if ! cmp -s "$f" "$out/$name"; then
      echo "generated $out/$name is out of date with proto/: run scripts/gen_proto.sh" >&2
      exit 1
    fi
  done
  for f in "$out"/*_pb2*.py*; do
    [ -e "$dest/$(basename "$f")" ] || { echo "$f has no .proto in proto/: remove it" >&2; exit 1; }
  done
  echo "generated code matches proto/"
fi
