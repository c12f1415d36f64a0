"""`models:/` URIs and the names inside them: tables of examples, then round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiaas.errors import InvalidArgument
from aiaas.registry.uri import ModelUri, parse_uri, parse_version_uri

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", fullmatch=True)
aliases = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,63}", fullmatch=True).filter(
    lambda alias: alias != "latest"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models:/mlp/3", ModelUri("mlp", version=3)),
        ("models:/mlp@production", ModelUri("mlp", alias="production")),
        ("models:/mlp/latest", ModelUri("mlp", latest=True)),
        ("models:/mlp", ModelUri("mlp")),
        ("models:/bert-base.v2_int8/12", ModelUri("bert-base.v2_int8", version=12)),
    ],
)
def test_uris_parse_as_mlflow_spells_them(text, expected):
    assert parse_uri(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    "text",
    [
        "mlp/3",
        "models:mlp/3",
        "models://mlp/3",
        "models:/",
        "models:/mlp/0",
        "models:/mlp/-1",
        "models:/mlp/1.5",
        "models:/mlp/99999999999",
        "models:/mlp/3/extra",
        "models:/mlp@",
        "models:/mlp@1",
        "models:/mlp@latest",
        "models:/mlp@a/b",
        "models:/../etc@x",
        "models:/.hidden/1",
        "models:/a b/1",
        "models:/mlp/\u0663",
    ],
)
def test_malformed_uris_are_invalid_arguments(text):
    with pytest.raises(InvalidArgument):
        parse_uri(text)


def test_a_model_uri_is_not_a_version_uri():
    with pytest.raises(InvalidArgument, match="names a model"):
        parse_version_uri("models:/mlp")


@given(names, st.integers(1, 2**31 - 1))
def test_version_uris_round_trip(name, version):
    uri = ModelUri(name, version=version)
    assert parse_uri(str(uri)) == uri


@given(names, aliases)
def test_alias_uris_round_trip(name, alias):
    uri = ModelUri(name, alias=alias)
    assert parse_uri(str(uri)) == uri


@given(st.text(max_size=40))
def test_any_text_parses_or_is_an_invalid_argument(text):
    try:
        uri = parse_uri(text)
    except InvalidArgument:
        return
    assert parse_uri(str(uri)) == uri
