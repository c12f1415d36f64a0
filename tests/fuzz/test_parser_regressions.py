"""What the parser fuzzers found, pinned one by one (their inputs are also kept in
fuzz/corpus/<target>/regression-*): each was an exception other than ours, i.e. a 500
and a traceback for a client, or a crashed load for an operator."""

from __future__ import annotations

import numpy as np
import pytest

from aiaas import tensors
from aiaas.errors import InvalidArgument
from aiaas.serve import config
from aiaas.serve.llm.tokenizer import ChatTokenizer
from fuzz import chat


@pytest.mark.parametrize(
    "shape",
    [[0, 2**62], [0, 2**63 - 1, 2**63 - 1], [2**40, 2**40]],
    ids=["zero-times-huge", "two-huge", "product-huge"],
)
@pytest.mark.parametrize("datatype", ["FP32", "BYTES"])
def test_a_shape_no_array_can_have_is_refused_even_with_a_zero_dimension(shape, datatype):
    # numpy's reshape raised ValueError("array is too big") for [0, 2**62] with no data.
    with pytest.raises(InvalidArgument, match="too large"):
        tensors.from_json_data([], datatype, tensors.check_shape(shape, "x"), "x")


def test_more_than_64_dimensions_are_refused():
    with pytest.raises(InvalidArgument, match="65 dimensions"):
        tensors.check_shape([1] * 65, "x")
    assert tensors.check_shape([1] * 64, "x") == (1,) * 64


@pytest.mark.parametrize(("datatype", "value"), [("FP16", 70000), ("FP32", 1e300)])
def test_a_json_number_too_large_for_the_float_type_is_refused_not_made_inf(datatype, value):
    with pytest.raises(InvalidArgument, match=f"outside the range of {datatype}"):
        tensors.from_json_data([value, 1], datatype, (2,), "x")
    largest = float(np.finfo(tensors.numpy_dtype(datatype)).max)
    assert tensors.from_json_data([largest], datatype, (1,), "x")[0] == largest


def test_a_config_number_out_of_its_fields_range_is_a_config_error():
    # protobuf's text parser raised ValueError("Value out of range") past ParseError.
    with pytest.raises(InvalidArgument, match=r"config.pbtxt: .*out of range"):
        config.parse_pbtxt('input [ { name: "a" data_type: 66666666666666666666666 } ]')


def test_a_chat_template_nested_too_deep_is_a_template_error():
    # jinja's parser recursed until RecursionError.
    with pytest.raises(InvalidArgument, match="chat template does not parse"):
        chat.tokenizer("{{" + "{" * 5000)


@pytest.mark.parametrize(
    "template",
    [
        "{{ messages[0]['content'] + 1 }}",
        "{{ 1 / (messages | length - 1) }}",
        "{{ '%d' % messages[0]['content'] }}",
        "{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}",
    ],
    ids=["type-error", "zero-division", "value-error", "recursion"],
)
def test_a_template_expression_that_fails_on_the_messages_is_a_client_error(template):
    tokenizer: ChatTokenizer = chat.tokenizer(template)
    with pytest.raises(InvalidArgument, match="chat template failed on these messages"):
        tokenizer.apply_chat_template([{"role": "user", "content": "hi"}])
