"""The catalogue's search box: words, tags and metric comparisons, parsed and matched."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiaas.errors import InvalidArgument
from aiaas.ui.search import MetricCondition, Query, parse_query


def test_terms_split_into_words_tags_and_metric_comparisons():
    query = parse_query("  digits task=chat accuracy>0.97 loss<=0.2 int8 f1!=1 ")
    assert query.words == ("digits", "int8")
    assert query.tags == {"task": "chat"}
    assert query.metrics == (
        MetricCondition("accuracy", ">", 0.97),
        MetricCondition("loss", "<=", 0.2),
        MetricCondition("f1", "!=", 1.0),
    )


def test_an_empty_search_is_empty():
    assert parse_query("   ").empty
    assert not parse_query("x").empty


def test_names_match_every_word_ignoring_case():
    query = parse_query("DIG int8")
    assert query.name_matches("digits-int8")
    assert not query.name_matches("digits-pruned")


def test_a_tag_matches_on_the_version_or_its_model():
    query = parse_query("task=chat")
    assert query.tags_match({}, {"task": "chat"})
    assert query.tags_match({"task": "chat"}, {})
    assert not query.tags_match({"task": "classification"}, {"other": "chat"})


@pytest.mark.parametrize(
    ("term", "value", "holds"),
    [
        ("accuracy>0.97", 0.975, True),
        ("accuracy>0.97", 0.97, False),
        ("accuracy>=0.97", 0.97, True),
        ("accuracy<0.97", 0.96, True),
        ("accuracy<=0.97", 0.98, False),
        ("accuracy!=0.97", 0.97, False),
    ],
)
def test_comparisons_hold_as_written(term, value, holds):
    assert parse_query(term).metrics_match({"accuracy": value}) is holds


def test_a_version_without_the_metric_does_not_match():
    assert not parse_query("accuracy>0").metrics_match({"loss": 1.0})


@pytest.mark.parametrize("term", ["accuracy>abc", "accuracy>nan", "accuracy<inf", "=chat"])
def test_bad_terms_are_invalid_arguments_naming_the_term(term):
    with pytest.raises(InvalidArgument, match="search term"):
        parse_query(term)


def test_a_search_over_a_thousand_characters_is_refused():
    with pytest.raises(InvalidArgument, match="over 1000"):
        parse_query("a" * 1001)


@given(st.text(max_size=200))
def test_any_text_parses_or_is_an_invalid_argument(text):
    try:
        query = parse_query(text)
    except InvalidArgument:
        return
    assert isinstance(query, Query)
    assert all(" " not in word and word for word in query.words)
