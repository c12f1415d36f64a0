"""Run benchmark suites: `python -m bench` (all but the soak) or `python -m bench SUITE [flags]`.

Each suite measures its baseline in the same run and writes its table under
bench/results/; bench/RESULTS.md collects the figures with what they mean.
"""

from __future__ import annotations

import importlib
import sys

SUITES = {
    "serve": "bench.serve_bench",
    "compress": "bench.compress_bench",
    "train": "bench.train_bench",
    "registry": "bench.registry_bench",
    "federated": "bench.federated_bench",
    "protocol": "bench.protocol_bench",
    "llm": "bench.llm_bench",
    "edge": "bench.edge_bench",
    "edge-agent": "bench.edge_agent_bench",
    "soak": "bench.soak_bench",
    "faults": "bench.faults_bench",
    "grpc-percall": "bench.grpc_percall_bench",
    "hop": "bench.hop_bench",
    "models": "bench.models_bench",
}


#: Suites only run when named: the soak takes half an hour and wants a quiet machine;
#: grpc-percall compares code trees (commits) of aiaas, a tool for work on the gRPC path.
ON_REQUEST = {"soak", "grpc-percall"}


def main() -> None:
    args = sys.argv[1:]
    chosen = (
        [args.pop(0)] if args and args[0] in SUITES else [s for s in SUITES if s not in ON_REQUEST]
    )
    for suite in chosen:
        try:
            module = importlib.import_module(SUITES[suite])
        except ModuleNotFoundError as error:
            if error.name != SUITES[suite]:
                raise
            print(f"skipping {suite}: {SUITES[suite]} does not exist yet", file=sys.stderr)
            continue
        module.main(args)


if __name__ == "__main__":
    main()
