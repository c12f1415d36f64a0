"""TLS on both ports (--tls-cert, --tls-key), checked by the clients users run:
tritonclient over HTTPS and gRPC, and the official openai client, each trusting a
throwaway CA made here."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from models import add_sub, save
from ports import free_port
from processes import ROOT, server_env
from tritonclient.utils import InferenceServerException

TOKEN = "tls-admin-token-4d2e"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _sign(subject, issuer, public_key, signer, *, ca: bool, names=()) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1 and localhost."""
    folder = tmp_path_factory.mktemp("certs")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _sign(_name("aiaas test CA"), _name("aiaas test CA"), ca_key.public_key(), ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = _sign(_name("localhost"), ca.subject, key.public_key(), ca_key, ca=False, names=names)
    paths = {"ca": folder / "ca.crt", "cert": folder / "server.crt", "key": folder / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture(scope="module")
def tls_server(module_tmp, certs):
    """A TLS server, started by hand: the shared fixture polls over plain HTTP."""
    repo = module_tmp / "models"
    save(add_sub(), repo, "add_sub")
    http_port, grpc_port = free_port(), free_port()
    log = open(module_tmp / "tls-server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            sys.executable, "-m", "aiaas.cli", "serve", "--model-repository", str(repo),
            "--http-port", str(http_port), "--grpc-port", str(grpc_port),
            "--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"]),
            "--model-control-mode", "explicit", "--load-model", "*", "--admin-token", TOKEN,
        ],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=server_env(),
    )  # fmt: skip
    context = ssl.create_default_context(cafile=str(certs["ca"]))
    url = f"https://127.0.0.1:{http_port}"
    try:
        _wait_ready(process, url, context)
        yield {"url": url, "http_port": http_port, "grpc_port": grpc_port, "context": context}
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def _wait_ready(process: subprocess.Popen, url: str, context: ssl.SSLContext) -> None:
    with httpx.Client(verify=context, timeout=1) as client:
        for _ in range(600):
            assert process.poll() is None, "the TLS server exited"
            try:
                if client.get(url + "/v2/health/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(0.1)
    raise AssertionError("the TLS server did not become ready")


def _inputs(module):
    a = np.arange(4, dtype=np.int32).reshape(1, 4)
    inputs = [module.InferInput("a", [1, 4], "INT32"), module.InferInput("b", [1, 4], "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(a)
    return inputs, a


def test_tritonclient_http_over_tls_verifies_the_server(tls_server, certs):
    client = httpclient.InferenceServerClient(
        f"127.0.0.1:{tls_server['http_port']}", ssl=True, ssl_options={"ca_certs": str(certs["ca"])}
    )
    inputs, a = _inputs(httpclient)
    result = client.infer("add_sub", inputs)
    np.testing.assert_array_equal(result.as_numpy("sum"), a + a)
    client.close()


def test_tritonclient_http_without_the_ca_refuses_the_server(tls_server):
    """tritonclient's `insecure` skips only the host name check (geventhttpclient), so a
    client that does not trust the CA is refused whatever it says."""
    port = tls_server["http_port"]
    for insecure in (False, True):
        untrusting = httpclient.InferenceServerClient(
            f"127.0.0.1:{port}", ssl=True, insecure=insecure
        )
        with pytest.raises(ssl.SSLCertVerificationError):
            untrusting.is_server_live()
        untrusting.close()


def test_plain_http_on_a_tls_port_gets_no_answer(tls_server):
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls_server['http_port']}/v2/health/live", timeout=5)


def test_tritonclient_grpc_over_tls_with_the_admin_token(tls_server, certs):
    client = grpcclient.InferenceServerClient(
        f"localhost:{tls_server['grpc_port']}", ssl=True, root_certificates=str(certs["ca"])
    )
    inputs, a = _inputs(grpcclient)
    np.testing.assert_array_equal(client.infer("add_sub", inputs).as_numpy("sum"), a + a)
    with pytest.raises(InferenceServerException) as caught:
        client.unload_model("add_sub")
    assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
    client.unload_model("add_sub", headers={"authorization": f"Bearer {TOKEN}"})
    client.load_model("add_sub", headers={"authorization": f"Bearer {TOKEN}"})
    assert client.is_model_ready("add_sub")
    client.close()


def test_grpc_without_tls_gets_no_answer_from_a_tls_port(tls_server):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{tls_server['grpc_port']}")
    with pytest.raises(InferenceServerException):
        client.is_server_live(client_timeout=5)
    client.close()


def test_the_openai_client_over_tls(tls_server):
    with httpx.Client(verify=tls_server["context"]) as http_client:
        client = openai.OpenAI(
            base_url=tls_server["url"] + "/v1", api_key="unused", http_client=http_client
        )
        assert [model.id for model in client.models.list()] == []
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("add_sub")


@pytest.mark.parametrize("given", [("--tls-cert",), ("--tls-key",)])
def test_half_a_tls_configuration_is_one_line_and_exit_2(certs, given):
    flag = given[0]
    result = subprocess.run(
        [
            sys.executable, "-m", "aiaas.cli", "serve", "--model-repository", str(ROOT),
            "--http-port", str(free_port()), "--grpc-port", str(free_port()),
            flag, str(certs["cert"] if flag == "--tls-cert" else certs["key"]),
        ],
        capture_output=True, text=True, cwd=ROOT, env=server_env(), timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr == "error: --tls-cert and --tls-key go together: give both or neither\n"
