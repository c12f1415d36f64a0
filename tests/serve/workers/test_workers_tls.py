"""TLS with `--workers 2`: the front ends speak TLS on the public ports while the engine
behind them listens in plain on its private sockets; both the answers a front end
gives itself and the ones it passes through arrive over TLS, admin token checks
included."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import models
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ports import free_port
from processes import ROOT, server_env
from tritonclient.utils import InferenceServerException
from worker_pids import wait_for

TOKEN = "workers-tls-token-81c3"


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.crt", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[dict]:
    models.save(models.add_sub(), tmp_path / "repo", "add_sub")
    cert, key = self_signed(tmp_path)
    http_port, grpc_port = free_port(), free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            sys.executable, "-m", "aiaas.cli", "serve", "--workers", "2",
            "--model-repository", str(tmp_path / "repo"),
            "--http-port", str(http_port), "--grpc-port", str(grpc_port),
            "--tls-cert", str(cert), "--tls-key", str(key), "--admin-token", TOKEN,
            "--model-control-mode", "explicit", "--load-model", "add_sub",
        ],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=server_env(),
    )  # fmt: skip
    context = ssl.create_default_context(cafile=str(cert))
    url = f"https://127.0.0.1:{http_port}"

    def serving() -> bool:
        assert process.poll() is None, (tmp_path / "server.log").read_text()
        try:
            return httpx.get(url + "/v2/health/ready", verify=context).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(serving, "the TLS server")
        yield {"url": url, "grpc_port": grpc_port, "context": context, "cert": cert}
    finally:
        process.terminate()
        process.wait(60)
        log.close()


def test_both_wires_answer_over_tls_and_check_the_admin_token(tls_server):
    a = np.arange(4, dtype=np.int32).reshape(1, 4)
    body = {
        "inputs": [
            {"name": name, "shape": [1, 4], "datatype": "INT32", "data": a.ravel().tolist()}
            for name in ("a", "b")
        ]
    }
    with httpx.Client(base_url=tls_server["url"], verify=tls_server["context"]) as client:
        answer = client.post("/v2/models/add_sub/infer", json=body)  # answered by a front end
        assert answer.json()["outputs"][0]["data"] == (a + a).ravel().tolist()
        assert client.get("/v2/models/add_sub").json()["name"] == "add_sub"  # passed through
        assert client.post("/v2/repository/models/add_sub/unload").status_code == 401

    client = grpcclient.InferenceServerClient(
        f"127.0.0.1:{tls_server['grpc_port']}",
        ssl=True,
        root_certificates=str(tls_server["cert"]),
    )
    try:
        inputs = [grpcclient.InferInput(name, [1, 4], "INT32") for name in ("a", "b")]
        for given in inputs:
            given.set_data_from_numpy(a)
        np.testing.assert_array_equal(client.infer("add_sub", inputs).as_numpy("sum"), a + a)
        with pytest.raises(InferenceServerException) as refused:
            client.unload_model("add_sub")
        assert refused.value.status() == "StatusCode.UNAUTHENTICATED"
        client.unload_model("add_sub", headers={"authorization": f"Bearer {TOKEN}"})
        assert not client.is_model_ready("add_sub")
    finally:
        client.close()
