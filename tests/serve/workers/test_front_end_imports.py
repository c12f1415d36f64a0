"""A `--workers` front-end process runs no model, so it must not pay for one: importing it
loads neither ONNX Runtime nor the registry's database stack nor the catalogue (each
front end is a process of its own, and N of them would hold N copies)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_a_front_end_process_imports_no_runtime_registry_or_catalogue() -> None:
    code = (
        "import sys\n"
        "import aiaas.serve.workers.frontend\n"
        "heavy = ('onnxruntime', 'sqlalchemy', 'alembic', 'jinja2', 'torch', 'tokenizers')\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & set(heavy))\n"
        "bad += [m for m in sys.modules if m.startswith(('aiaas.registry', 'aiaas.ui'))]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
