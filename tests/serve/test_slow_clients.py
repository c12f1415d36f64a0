"""Slow clients are cut off without stopping anyone else: headers sent a byte at a time,
a body sent a byte at a time, a connection that sends nothing, a gRPC handshake that
never finishes. Each test stops by itself; no duration decides it: the server must
answer another client meanwhile, and close the slow connection within a bound far
above the configured timeout."""

from __future__ import annotations

import select
import socket
import time

import httpx
import models
import pytest
import tritonclient.grpc as grpcclient

#: Far above the 1 s timeouts below: only a server that never cuts the client off fails.
BOUND_S = 60


@pytest.fixture(scope="module")
def server(module_tmp, module_server):
    repo = module_tmp / "models"
    models.save(models.add_constant(1), repo, "m")
    return module_server(repo, "--header-timeout-s", "1", "--body-timeout-s", "1")


def _others_are_served(server) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0] * 4}]}
    answer = httpx.post(f"{server.url}/v2/models/m/infer", json=body, timeout=30)
    assert answer.json()["outputs"][0]["data"] == [1.0] * 4
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    assert client.is_server_live()
    client.close()


def _trickle(
    sock: socket.socket, head: bytes, dribble: bytes, server, *, repeat: bool = True
) -> bytes:
    """Send ``head``, then ``dribble`` a byte at a time (over and over when ``repeat``),
    checking between bytes that other clients are served; returns what the server said
    before it closed the connection."""
    sock.sendall(head)
    received = b""
    deadline = time.monotonic() + BOUND_S
    for index in range(10**6):
        if time.monotonic() > deadline:
            raise AssertionError(f"the slow connection was still open after {BOUND_S} s")
        readable, _, _ = select.select([sock], [], [], 0.2)
        if readable:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk
            continue
        if index % 5 == 0:
            _others_are_served(server)
        if not repeat and index >= len(dribble):
            continue
        try:
            sock.sendall(dribble[index % len(dribble) : index % len(dribble) + 1])
        except (BrokenPipeError, ConnectionResetError):
            return received
    raise AssertionError("unreachable")


def test_headers_sent_a_byte_at_a_time_are_cut_off_with_408(server):
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
        said = _trickle(sock, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n", b"X-Slow: a", server)
    assert said.startswith(b"HTTP/1.1 408 "), said
    _others_are_served(server)


def test_a_body_sent_a_byte_at_a_time_is_cut_off_with_408(server):
    head = (
        b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
        said = _trickle(sock, head, b' {"inputs": []}', server)
    assert said.startswith(b"HTTP/1.1 408 "), said
    _others_are_served(server)


def test_a_connection_that_sends_nothing_is_closed(server):
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=BOUND_S) as sock:
        _others_are_served(server)
        assert sock.recv(65536) == b""  # closed, unanswered: nothing was asked


def test_a_client_that_leaves_mid_body_frees_the_server(server):
    head = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{"
    for _ in range(50):
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
            sock.sendall(head)
    _others_are_served(server)


def test_a_grpc_handshake_sent_a_byte_at_a_time_is_cut_off(server):
    """The HTTP/2 preface but its last byte, a byte at a time: valid so far, never done."""
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r"
    with socket.create_connection(("127.0.0.1", server.grpc_port), timeout=30) as sock:
        _trickle(sock, b"", preface, server, repeat=False)
    _others_are_served(server)
