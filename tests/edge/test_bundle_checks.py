"""The runner refuses a bundle it cannot trust — a changed file, manifest or signature, the
wrong key, a file slipped in — with one plain line and a non-zero exit, before it loads
anything; and `aiaas edge` refuses bad requests with one line, leaving nothing behind."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from edge_support import DevicePython, aiaas

from aiaas.edge import manifest as bundle_format


def _flip_model_byte(folder: Path) -> None:
    model = folder / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))


def _rename_in_manifest(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["version"] = 99
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _rehash_after_change(folder: Path) -> None:
    """An attacker who changes the model and fixes the manifest's sha256 to match."""
    _flip_model_byte(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == "model.onnx":
            entry["sha256"] = bundle_format.file_sha256(folder / "model.onnx")
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _corrupt_signature(folder: Path) -> None:
    signature = bytearray((folder / "manifest.sig").read_bytes())
    signature[0] ^= 0xFF
    (folder / "manifest.sig").write_bytes(bytes(signature))


def _add_file(folder: Path) -> None:
    (folder / "extra.py").write_text("print('not shipped')\n")


def _remove_sidecar(folder: Path) -> None:
    (folder / "labels.txt").unlink()


Tamper = Callable[[Path], None]
CASES: list[tuple[Tamper, bool, str]] = [
    (_flip_model_byte, False, "model.onnx does not match its sha256"),
    (_remove_sidecar, False, "missing file labels.txt"),
    (_add_file, False, "file not in the manifest: extra.py"),
    (_rename_in_manifest, True, "the signature does not match manifest.json"),
    (_rehash_after_change, True, "the signature does not match manifest.json"),
    (_corrupt_signature, True, "the signature does not match manifest.json"),
]


@pytest.fixture(scope="module")
def signed_bundle(digits_repo: Path, keys: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("signed") / "digits"
    result = aiaas("edge", "bundle", digits_repo / "digits", "--out", out, "--no-measure",
                   "--sign", keys / "good" / "edge.key")  # fmt: skip
    assert result.returncode == 0, result.stderr
    sample = out.parent / "x.npy"
    np.save(sample, np.ones((1, 64), dtype=np.float32))
    return out, sample


@pytest.mark.parametrize(
    ("tamper", "with_key", "reason"), CASES, ids=lambda c: getattr(c, "__name__", None)
)
def test_a_tampered_bundle_is_refused_with_one_line_before_loading(
    signed_bundle, full_device: DevicePython, keys: Path, tmp_path: Path,
    tamper: Tamper, with_key: bool, reason: str,
) -> None:  # fmt: skip
    original, sample = signed_bundle
    folder = tmp_path / "copy"
    shutil.copytree(original, folder)
    tamper(folder)
    key = ["--public-key", str(keys / "good" / "edge.pub")] if with_key else []

    ran = full_device.run(folder / "run.py", "--input", sample, *key)

    assert ran.returncode == 2
    assert ran.stdout == ""
    assert len(ran.stderr.strip().splitlines()) == 1, ran.stderr
    assert reason in ran.stderr


def test_a_signed_bundle_runs_under_its_key_and_is_refused_under_another(
    signed_bundle, full_device: DevicePython, keys: Path
) -> None:
    folder, sample = signed_bundle

    good = full_device.run(folder / "run.py", "--input", sample,
                              "--public-key", keys / "good" / "edge.pub")  # fmt: skip
    wrong = full_device.run(folder / "run.py", "--input", sample,
                               "--public-key", keys / "other" / "edge.pub")  # fmt: skip

    assert good.returncode == 0, good.stderr
    assert "probabilities" in good.stdout
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines() == [
        f"error: {folder}: the signature does not match manifest.json under "
        f"{keys / 'other' / 'edge.pub'}"
    ]
    bundle_format.verify(folder, keys / "good" / "edge.pub")  # the agent's check agrees
    with pytest.raises(bundle_format.BundleRejected):
        bundle_format.verify(folder, keys / "other" / "edge.pub")


def test_an_unsigned_bundle_is_refused_when_a_key_is_given(
    digits_repo: Path, full_device: DevicePython, keys: Path, bundle, tmp_path: Path
) -> None:
    folder = bundle(digits_repo / "digits", "--no-measure")

    ran = full_device.run(folder / "run.py", "--verify-only",
                             "--public-key", keys / "good" / "edge.pub")  # fmt: skip

    assert ran.returncode == 2
    assert "is not signed (no manifest.sig) and a public key was given" in ran.stderr


def test_checking_a_signature_without_cryptography_says_what_it_needs(
    signed_bundle, device: DevicePython, keys: Path
) -> None:
    folder, _ = signed_bundle

    ran = device.run(folder / "run.py", "--verify-only", "--public-key", keys / "good" / "edge.pub")

    assert ran.returncode == 2
    assert ran.stderr.strip() == "error: checking a signature needs the 'cryptography' package"


def test_a_bundle_needing_a_newer_onnxruntime_is_refused(
    digits_repo: Path, device: DevicePython, tmp_path: Path, bundle
) -> None:
    folder = bundle(digits_repo / "digits", "--no-measure")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["min_onnxruntime"] = "99.0"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    np.save(tmp_path / "x.npy", np.ones((1, 64), dtype=np.float32))

    ran = device.run(folder / "run.py", "--input", tmp_path / "x.npy")

    assert ran.returncode == 2
    assert "this bundle needs onnxruntime >= 99.0" in ran.stderr


def test_bundle_refuses_an_out_folder_that_is_not_empty(digits_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")

    result = aiaas("edge", "bundle", digits_repo / "digits", "--out", out, "--no-measure")

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {out} already exists and is not empty; choose another --out"
    ]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_int4_of_a_classifier_is_refused_naming_what_makes_it(
    digits_repo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "int4"

    result = aiaas("edge", "bundle", digits_repo / "digits", "--out", out, "--variant", "int4")

    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "aiaas compress llm --variant int4" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(
    tmp_path: Path,
) -> None:
    first = aiaas("edge", "keygen", "--out", tmp_path / "keys")
    key = (tmp_path / "keys" / "edge.key").read_bytes()

    again = aiaas("edge", "keygen", "--out", tmp_path / "keys")

    assert first.returncode == 0, first.stderr
    assert (tmp_path / "keys" / "edge.key").stat().st_mode & 0o777 == 0o600
    assert again.returncode == 2
    assert "exists; keygen never overwrites a key" in again.stderr
    assert (tmp_path / "keys" / "edge.key").read_bytes() == key


def test_a_bad_signing_key_is_refused_before_any_work(digits_repo: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.key").write_text("not a key")

    result = aiaas("edge", "bundle", digits_repo / "digits", "--out", tmp_path / "b",
                   "--sign", tmp_path / "bad.key")  # fmt: skip

    assert result.returncode == 2
    assert "is not a readable ed25519 private key" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.key"]
