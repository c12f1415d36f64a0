"""Make the README's catalogue screenshots (docs/catalogue/*.png) from a real server.

A throwaway registry holds the example MLP (two versions) and an int8 copy made by
ONNX Runtime's dynamic quantization (its parent: mlp/1), with the README's example
metrics; the server serves them by alias and the example SmolLM2 from a repository.
Playwright drives Debian's Chromium. Needs `make setup` and `apt-get install chromium`:

    python docs/catalogue/make_screenshots.py
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from onnxruntime.quantization import quantize_dynamic
from PIL import Image
from playwright.sync_api import Page, sync_playwright

from aiaas.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples" / "model_repository"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _registry(folder: Path) -> str:
    uri = f"sqlite:///{folder / 'registry.db'}"
    mlp = EXAMPLES / "mlp" / "1" / "model.onnx"
    subprocess.run([sys.executable, str(ROOT / "examples" / "make_model_repository.py"),
                    "--mlp", str(folder / "mlp-v2.onnx"), "--seed", "1"], check=True)  # fmt: skip
    quantize_dynamic(str(mlp), str(folder / "mlp-int8.onnx"))
    with Registry.open(uri, str(folder / "artifacts")) as registry:
        registry.register(
            "mlp", mlp, description="MNIST MLP", tags={"dataset": "mnist"},
            metrics={"accuracy": 0.981}, run_id="run-42", params={"lr": 0.001, "epochs": 10},
        )  # fmt: skip
        registry.register("mlp", folder / "mlp-v2.onnx", metrics={"accuracy": 0.985})
        registry.register(
            "mlp-int8", folder / "mlp-int8.onnx", parents=["models:/mlp/1"],
            metrics={"accuracy": 0.975}, recipe={"quantize": "int8", "per_channel": True},
        )  # fmt: skip
        registry.set_alias("mlp", "production", 1)
    return uri


def _traffic(url: str) -> None:
    """Requests to both MLPs, so their latency on this server shows in the trade-offs."""
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                        "data": np.random.default_rng(0).random(64).tolist()}]}  # fmt: skip
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(50):
            for model in ("mlp", "mlp-int8"):
                client.post(f"/v2/models/{model}/infer", json=body).raise_for_status()


def _save(page: Page, name: str, *, full_page: bool = False) -> None:
    """PNG with a 64-colour palette: a tenth of the size, the same to the eye."""
    shot = Image.open(io.BytesIO(page.screenshot(full_page=full_page)))
    shot.convert("RGB").quantize(64).save(OUT / f"{name}.png", optimize=True)


def _shoot(url: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=CHROMIUM_ARGS)  # fmt: skip
        page = browser.new_page(base_url=url, viewport={"width": 1100, "height": 560})
        page.goto("/ui")
        _save(page, "list")
        page.set_viewport_size({"width": 1100, "height": 1240})
        page.goto("/ui/models/mlp-int8/versions/1")
        _save(page, "version-lineage")
        page.set_viewport_size({"width": 1100, "height": 620})
        page.goto("/ui/models/smollm2/versions/1")
        page.fill("#chat-temperature", "0")
        page.get_by_label("Message").fill("What is the capital of France?")
        page.get_by_role("button", name="Send").click()
        page.locator('#chat-log .text[data-done="true"]').wait_for(timeout=120_000)
        page.evaluate("window.scrollTo(0, document.querySelector('#chat-h').offsetTop - 16)")
        _save(page, "chat")
        browser.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        uri = _registry(folder)
        (folder / "repo").mkdir()
        (folder / "repo" / "smollm2").symlink_to(EXAMPLES / "smollm2")
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        command = [
            sys.executable, "-m", "aiaas.cli", "serve", "--model-repository", str(folder / "repo"),
            "--registry-uri", uri, "--artifact-root", str(folder / "artifacts"),
            "--registry-cache-dir", str(folder / "cache"), "--http-port", str(port),
            "--grpc-port", "0",
            "--model", "models:/mlp@production", "--model", "models:/mlp-int8/1",
        ]  # fmt: skip
        server = subprocess.Popen(command, env={**os.environ, "AIAAS_ADMIN_TOKEN": "screenshots"})
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            _traffic(url)
            _shoot(url)
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
