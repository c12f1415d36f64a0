"""Run benchmark suites: `python -m bench` (all) or `python -m bench serve ...`."""

from __future__ import annotations

import sys


def main() -> None:
    suites = {"serve": "bench.serve_bench"}
    args = sys.argv[1:]
    chosen = [args.pop(0)] if args and args[0] in suites else list(suites)
    for suite in chosen:
        module = __import__(suites[suite], fromlist=["main"])
        module.main(args)


if __name__ == "__main__":
    main()
