"""README.md's shell examples run as written, in order, on a fresh copy of the repository.

The convention, also stated at the top of README.md:
- every ```bash, ```sh or ```shell block runs, in the README's order, in ONE bash session, as
  in a reader's terminal: `source`, `export`, `cd` and shell variables carry over from one
  block to the next. The session runs with `set -e -o pipefail`, so a failing command fails
  this test, which names its block and line;
- ```console blocks, and blocks without a language, are shown and never run. Each is there
  for a reason the README makes plain: `make run` serves until Ctrl-C and `make test` is this
  suite; PostgreSQL and the admin-token example need a database or a server elsewhere;
  multi-machine training needs other machines;
- ```python blocks are shown, not run (many are fragments); Python meant to run is written in
  a bash block as `python - <<'PY' ... PY`. A command shown failing on purpose is written
  `... || echo "exit code $?"`, so the session goes on;
- a server is started in the background (`aiaas serve ... &`, its pid kept in a variable),
  waited for by a readiness loop written in the README, and stopped by the README when its
  section is done. Whatever happens, this test ends the session's whole process group.

The fresh copy is what `make setup` leaves on a clone: the repository's files (tracked, plus
new ones not ignored), `.venv` (a link to the environment running this test, with the copy
first on PYTHONPATH so the copy's code is what runs) and the generated example repository.
HOME and AIAAS_HOME point into the copy, so the default registry is a new one. When the
system allows a private network namespace, the session runs in one, so the README's fixed
ports (8000, 8001, 9092) cannot clash with anything else on the machine.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RUN_LANGUAGES = {"bash", "sh", "shell"}
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
#: Generous: training, compression and a federated deployment, on a loaded 2-core machine.
SESSION_TIMEOUT_S = 840
MARKER = "::readme-block"


@dataclass(frozen=True)
class Block:
    line: int
    language: str
    text: str


def readme_blocks(markdown: str) -> list[Block]:
    """Every fenced block with its language and the line its fence opens on."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, language = opening.group(1), opening.group(2)
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            line = lines[index]
            body.append(line[len(indent) :] if line.startswith(indent) else line)
            index += 1
        blocks.append(Block(index - len(body), language, "\n".join(body)))
        index += 1
    return blocks


def session_script(blocks: list[Block]) -> str:
    parts = ["set -e -o pipefail"]
    for number, block in enumerate(blocks, 1):
        # A newline first: curl's answers end without one.
        where = f"{number} (README.md line {block.line})"
        parts.append(f"printf '\\n%s at %ss\\n' '{MARKER} {where}' \"$SECONDS\"")
        parts.append(block.text)
    parts.append(f"printf '\\n%s at %ss\\n' '{MARKER} done' \"$SECONDS\"")
    return "\n".join(parts) + "\n"


def test_fences_are_found_with_their_language_and_line():
    blocks = readme_blocks("x\n```bash\necho 1\n```\n  ```console\n  make run\n  ```\n")
    assert blocks == [Block(2, "bash", "echo 1"), Block(5, "console", "make run")]


def test_the_readme_runs_shell_blocks_and_shows_console_ones():
    languages = {block.language for block in readme_blocks(README.read_text())}
    assert languages & RUN_LANGUAGES
    assert "console" in languages


def test_a_failing_block_stops_the_session_names_itself_and_leaves_no_process(tmp_path):
    background = "sleep 300 &\necho $! > pid"
    blocks = [Block(1, "bash", background), Block(5, "bash", "false"), Block(9, "bash", "echo no")]
    returncode, log = _run_session(tmp_path, session_script(blocks))
    assert returncode == 1
    assert _failure(returncode, log, blocks).startswith("README block 2 (README.md line 5)")
    assert "\nno\n" not in log
    assert not _alive(int((tmp_path / "pid").read_text()))


def _fresh_copy(destination: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode()  # fmt: skip
    for relative in filter(None, listed.split("\0")):
        source = ROOT / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (destination / ".venv").symlink_to(Path(sys.prefix))
    # The language model takes minutes to convert: `make setup` made it here already, and
    # the README only reads it, so the copy links to it instead of converting it again.
    converted = ROOT / "examples" / "model_repository" / "smollm2"
    if (converted / "1" / "model.onnx").is_file():
        (destination / "examples" / "model_repository").mkdir(parents=True, exist_ok=True)
        (destination / "examples" / "model_repository" / "smollm2").symlink_to(converted)
    subprocess.run(
        [sys.executable, "examples/make_model_repository.py"], cwd=destination, check=True
    )
    return destination


def _private_network() -> list[str]:
    """A command prefix giving the session its own loopback, or nothing where not allowed."""
    prefix = ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
    if not (shutil.which("unshare") and shutil.which("ip")):
        return []
    probe = subprocess.run([*prefix, "true"], capture_output=True)
    return prefix if probe.returncode == 0 else []


def _environment(copy: Path, private_network: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIAAS_")}
    env.pop("VIRTUAL_ENV", None)
    home = copy / ".home"
    home.mkdir()
    env.update(HOME=str(home), AIAAS_HOME=str(home / ".aiaas"), PYTHONPATH=str(copy))
    if private_network:
        env["GLOO_SOCKET_IFNAME"] = "lo"  # the host's name may resolve to an interface not there
    return env


def _run_session(copy: Path, script: str) -> tuple[int | None, str]:
    (copy / ".readme-session.sh").write_text(script)
    log_path = copy / ".readme-session.log"
    prefix = _private_network()
    with log_path.open("wb") as log:
        session = subprocess.Popen(
            [*prefix, "bash", ".readme-session.sh"], cwd=copy, env=_environment(copy, bool(prefix)),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            returncode: int | None = session.wait(timeout=SESSION_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            _end_process_group(session)
    return returncode, log_path.read_text(errors="replace")


def _end_process_group(session: subprocess.Popen[bytes]) -> None:
    """Servers the README left running, and anything they started, go with the session."""
    for sig, grace_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(session.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace_s
        while _group_alive(session.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    session.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _alive(pid: int) -> bool:
    """A zombie waiting for init to reap it is not alive."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _failure(returncode: int | None, log: str, blocks: list[Block]) -> str:
    markers = [line for line in log.splitlines() if line.startswith(MARKER)]
    where = markers[-1].removeprefix(MARKER).strip() if markers else "before the first block"
    number = int(where.split()[0]) if where[:1].isdigit() else 0
    where = where.split(" at ")[0]
    shown = blocks[number - 1].text if number else ""
    ending = "timed out" if returncode is None else f"exit code {returncode}"
    return f"README block {where}: {ending}\n--- block ---\n{shown}\n--- output ---\n{log[-6000:]}"


@pytest.mark.slow
@pytest.mark.timeout(SESSION_TIMEOUT_S + 120)
def test_every_shell_block_of_the_readme_runs_in_order_on_a_fresh_copy(tmp_path):
    blocks = [b for b in readme_blocks(README.read_text()) if b.language in RUN_LANGUAGES]
    copy = _fresh_copy(tmp_path / "aiaas")
    returncode, log = _run_session(copy, session_script(blocks))
    assert returncode == 0, _failure(returncode, log, blocks)
    assert f"\n{MARKER} done" in log
    # A few outputs the README shows, where checking is cheap:
    assert '"data":[11,22,33,44]' in log  # the quickstart's add_sub
    assert '"model_version":"2"' in log  # the registry's alias moved, the server followed


def test_the_federated_spec_shown_is_the_one_shipped():
    shipped = (ROOT / "examples" / "federated" / "digits.toml").read_text().splitlines()
    body = "\n".join(line for line in shipped if not line.startswith("#"))
    shown = [b.text for b in readme_blocks(README.read_text()) if b.language == "toml"]
    assert body in shown
