#!/usr/bin/env bash
# Regenerates the committed *_pb2*.py modules from the .proto files beside this script.
# Run from the repository root: bash aiaas/serve/protocol/proto/regenerate.sh
set -euo pipefail
cd "$(dirname "$0")/../../../.."
PY=${PYTHON:-.venv/bin/python}
PROTO=aiaas/serve/protocol/proto
"$PY" -m grpc_tools.protoc -I . --python_out=. --pyi_out=. "$PROTO"/model_config.proto
# Only the service file has RPCs; its stubs need grpcio >= the grpcio-tools that made them.
"$PY" -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. \
  "$PROTO"/grpc_service.proto
