"""config.pbtxt parsing and completion from the model's signature."""

from __future__ import annotations

import pytest

from aiaas.errors import InvalidArgument
from aiaas.serve import config, serving_config
from aiaas.tensors import TensorSpec

INPUTS = [TensorSpec("x", "FP32", (-1, 4)), TensorSpec("mask", "INT64", (-1, -1))]
OUTPUTS = [TensorSpec("y", "FP32", (-1, 2))]
FIXED = [TensorSpec("x", "FP32", (3, 4))]


def complete(text: str, inputs=INPUTS, outputs=OUTPUTS):
    return config.complete(config.parse_pbtxt(text), "m", inputs, outputs)


def test_empty_config_is_completed_from_the_model():
    done = complete("")
    assert done.name == "m"
    assert done.platform == "onnxruntime_onnx"
    assert done.backend == "onnxruntime"
    assert done.max_batch_size == config.DEFAULT_MAX_BATCH_SIZE
    assert [(t.name, list(t.dims)) for t in done.input] == [("x", [4]), ("mask", [-1])]
    assert done.input[0].data_type == config.pb.TYPE_FP32
    assert done.HasField("dynamic_batching")
    assert done.version_policy.latest.num_versions == 1
    assert done.instance_group[0].count == 1


def test_model_without_a_batch_dimension_is_not_batched():
    done = complete("", inputs=FIXED, outputs=[TensorSpec("y", "FP32", (3, 2))])
    assert done.max_batch_size == 0
    assert list(done.input[0].dims) == [3, 4]
    assert not done.HasField("dynamic_batching")


def test_explicit_zero_batch_size_keeps_full_dims():
    done = complete("max_batch_size: 0")
    assert done.max_batch_size == 0
    assert list(done.input[0].dims) == [-1, 4]


def test_every_supported_field_parses():
    text = """
name: "m"
platform: "onnxruntime_onnx"
backend: "onnxruntime"
max_batch_size: 16
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 2 ] label_filename: "labels.txt" } ]
version_policy { specific { versions: [ 1, 2 ] } }
instance_group [ { count: 2 kind: KIND_CPU }, { count: 1 } ]
dynamic_batching {
  max_queue_delay_microseconds: 250
  preferred_batch_size: [ 4, 8 ]
  priority_levels: 2
  default_priority_level: 2
  default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 1000
                         allow_timeout_override: true max_queue_size: 7 }
  priority_queue_policy { key: 1 value: { max_queue_size: 3 } }
}
parameters { key: "intra_op_thread_count" value: { string_value: "2" } }
parameters { key: "inter_op_thread_count" value: { string_value: "1" } }
parameters { key: "spinning" value: { string_value: "never" } }
optimization { graph { level: 1 } }
"""
    serving = serving_config.serving_config(complete(text))
    assert serving.max_batch_size == 16
    assert serving.runtime.instance_count == 3
    assert serving.runtime.intra_op_threads == 2
    assert serving.runtime.inter_op_threads == 1
    assert serving.runtime.graph_optimization_level == 1
    assert serving.runtime.spinning == "never"
    assert serving.label_filenames == {"y": "labels.txt"}
    batching = serving.batching
    assert batching.max_queue_delay_us == 250
    assert batching.preferred_batch_sizes == (4, 8)
    assert batching.priority_levels == 2
    assert batching.default_priority_level == 2
    assert batching.queue_policies[0].max_queue_size == 7
    assert batching.queue_policies[0].delay_on_timeout
    assert batching.queue_policies[0].allow_timeout_override
    assert batching.queue_policies[1].max_queue_size == 3
    assert batching.queue_policies[2].max_queue_size == 7


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("nonsense: 1", "nonsense"),
        ("max_batch_size: 'x'", "max_batch_size"),
        ("sequence_batching { }", "sequence_batching"),
        ('input [ { name: "x" data_type: TYPE_INT8 } ]', "input[0].data_type"),
        ('input [ { name: "x" dims: [ 4, 4 ] } ]', "input[0].dims"),
        ('input [ { name: "nope" } ]', "input[0].name"),
        ('input [ { name: "x" }, { name: "x" } ]', "listed twice"),
        ('input [ { name: "x" reshape: { shape: [ 4 ] } } ]', "reshape"),
        ('output [ { name: "y" data_type: TYPE_BF16 } ]', "data_type"),
        ('name: "other"', "name"),
        ('backend: "pytorch"', "backend"),
        ("max_batch_size: -1", "max_batch_size"),
        (
            "dynamic_batching { priority_levels: 2 default_priority_level: 3 }",
            "default_priority_level",
        ),
        (
            "dynamic_batching { priority_queue_policy { key: 5 value: { } } }",
            "priority_queue_policy",
        ),
        ('parameters { key: "inter_op_thread_count" value: { string_value: "-2" } }', "inter_op"),
        ('parameters { key: "spinning" value: { string_value: "often" } }', "spinning"),
    ],
)
def test_bad_fields_are_named(text, field):
    with pytest.raises(InvalidArgument) as error:
        serving_config.serving_config(complete(text))
    if field is not None:
        assert field in str(error.value)


def test_batching_needs_a_variable_first_dimension():
    with pytest.raises(InvalidArgument, match="max_batch_size"):
        complete("max_batch_size: 4", inputs=FIXED, outputs=[TensorSpec("y", "FP32", (3, 2))])


def test_json_form_uses_tritons_names():
    as_json = config.to_json_dict(complete("max_batch_size: 8"))
    assert as_json["max_batch_size"] == 8
    assert as_json["input"][0]["data_type"] == "TYPE_FP32"
    assert as_json["version_policy"] == {"latest": {"num_versions": 1}}
    round_trip = config.parse_json(__import__("json").dumps(as_json))
    assert round_trip.max_batch_size == 8


def test_malformed_json_override_is_named():
    with pytest.raises(InvalidArgument, match="config override"):
        config.parse_json('{"max_batch_size": "many"}')


def test_onnx_runtime_threads_spin_only_during_a_run_unless_the_config_says():
    assert serving_config.serving_config(complete("")).runtime.spinning == "run"
    always = 'parameters { key: "spinning" value: { string_value: "always" } }'
    assert serving_config.serving_config(complete(always)).runtime.spinning == "always"
