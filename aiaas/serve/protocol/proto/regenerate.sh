#!/usr/bin/env bash
# Regenerates the committed *_pb2*.py modules from the .proto files beside this script.
# Run from the repository root: bash aiaas/serve/protocol/proto/regenerate.sh
set -euo pipefail
cd "$(dirname "$0")/../../../.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -m grpc_tools.protoc -I . \
  --python_out=. --pyi_out=. --grpc_python_out=. \
  aiaas/serve/protocol/proto/*.proto
