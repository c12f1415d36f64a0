"""An artifact path read back from the registry's database stays inside the download
folder, whatever the database says: traversal, absolute paths, backslashes, NUL."""

from __future__ import annotations

import pytest

from aiaas.errors import InvalidArgument
from aiaas.registry.files import safe_relative


@pytest.mark.parametrize(
    "path",
    ["../x", "a/../../x", "/etc/passwd", "", "a\\..\\x", "model.onnx\x00.txt", "a/\x00/b"],
)
def test_unsafe_artifact_paths_are_refused(path):
    with pytest.raises(InvalidArgument, match="not a plain relative path"):
        safe_relative(path)


@pytest.mark.parametrize("path", ["model.onnx", "tokenizer/vocab.json", "a/b/c.bin"])
def test_plain_relative_paths_pass(path):
    assert safe_relative(path).as_posix() == path
