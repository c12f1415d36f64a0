"""`python -m fuzz TARGET [libFuzzer flags]`: coverage-guided fuzzing of one target with
atheris, seeded from fuzz/corpus/TARGET/ (kept in git: small seeds and every input that
found a bug); what it discovers on the way goes to .fuzz/TARGET/ (not kept). A finding is
written as crash-* in the working directory. `python -m fuzz --list` names the targets."""

from __future__ import annotations

import sys
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"


def main(argv: list[str]) -> None:
    if argv[1:] == ["--list"]:
        from fuzz.targets import TARGETS

        print("\n".join(TARGETS))
        return
    import atheris

    # jinja2 too: the chat-template target explores its lexer and parser.
    with atheris.instrument_imports(include=["aiaas", "fuzz", "jinja2"]):
        from fuzz.targets import TARGETS

    if len(argv) < 2 or argv[1] not in TARGETS:
        print(f"usage: python -m fuzz {{{','.join(TARGETS)}}} [libFuzzer flags]")
        sys.exit(2)
    name = argv[1]
    work = Path(".fuzz") / name
    work.mkdir(parents=True, exist_ok=True)
    atheris.Setup([argv[0], *argv[2:], str(work), str(CORPUS / name)], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
