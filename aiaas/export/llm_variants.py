"""Smaller variants of an exported language model, with ONNX Runtime's quantizers.

- ``int8``: dynamic quantization (int8 weights per channel, activations quantized at run
  time) of every MatMul with a constant weight.
- ``int4``: weight-only ``MatMulNBits``, 4-bit blocks of 32 along the input axis (the
  layout of the GGUF's own Q4_1), the output projection in 8 bits; accuracy level 4 lets
  ONNX Runtime multiply with int8 activations, its fastest CPU path.

The exported graph feeds the tied output projection through ``Transpose(embedding)``; it
is folded into a constant first, so the largest matrix (vocabulary x hidden) is quantized
too. int8 keeps the token embedding lookup in float32; int4 stores it in 8-bit blocks.
The other files of the version (tokenizer.json, generation.json) are copied unchanged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from aiaas import lineage
from aiaas.errors import InvalidArgument
from aiaas.export.llm import GENERATION_FILENAME, parse_target, write_config
from aiaas.export.repository import MODEL_FILENAME

VARIANTS = ("int8", "int4")
INT4_BLOCK_SIZE = 32
INT4_ACCURACY_LEVEL = 4


def quantize_version(
    source: Path, out: Path, variant: str, *, parent: Mapping[str, str] | None = None
) -> Path:
    """Write the ``variant`` of the version folder ``source`` as the version folder ``out``.

    Its lineage record inherits the source's and names ``parent`` (the registry version
    the folder was downloaded from), else the source's model.onnx by path and sha256.
    """
    if variant not in VARIANTS:
        raise InvalidArgument(f"variant '{variant}': use {' or '.join(VARIANTS)}")
    source = Path(source)
    if not (source / MODEL_FILENAME).is_file() or not (source / GENERATION_FILENAME).is_file():
        raise InvalidArgument(f"{source} is not a version folder written by `aiaas export llm`")
    repository, name, version = parse_target(out)
    target = repository / name / str(version)
    if target.exists():
        raise InvalidArgument(f"{target} already exists; choose another version")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.staging-", dir=target.parent))
    try:
        for item in source.iterdir():
            if item.is_file() and item.name != MODEL_FILENAME and not item.name.startswith("."):
                shutil.copyfile(item, staging / item.name)
        parent = parent or lineage.file_parent(source / MODEL_FILENAME)
        recipe = _quantize(source / MODEL_FILENAME, staging / MODEL_FILENAME, variant, parent)
        _record_variant(staging, recipe)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_config(repository / name)
    return target


def _quantize(
    source: Path, destination: Path, variant: str, parent: Mapping[str, str]
) -> dict[str, Any]:
    model = onnx.load(str(source))
    props = {prop.key: prop.value for prop in model.metadata_props}
    fold_constant_transposes(model)
    with tempfile.TemporaryDirectory(prefix="aiaas-quantize-") as workdir:
        folded = Path(workdir) / "folded.onnx"
        onnx.save_model(model, str(folded))
        del model
        quantize = _int8 if variant == "int8" else _int4
        with _quiet_quantizers():
            recipe = quantize(folded, destination)
    quantized = onnx.load(str(destination))
    source_recipe = json.loads(props.get("aiaas.recipe", "{}"))
    recipe = {**source_recipe, "variant": variant, "quantization": recipe}
    record = lineage.derive(lineage.from_metadata(props), "compress", parent=parent, recipe=recipe)
    props.update(
        {
            "aiaas.variant": variant,
            "aiaas.recipe": json.dumps(recipe, sort_keys=True),
            lineage.LINEAGE_KEY: lineage.encode(record),
        }
    )
    del quantized.metadata_props[:]
    onnx.helper.set_model_props(quantized, props)
    onnx.save_model(quantized, str(destination))
    return recipe


def _int8(source: Path, destination: Path) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        source, destination, op_types_to_quantize=["MatMul"], per_channel=True,
        weight_type=QuantType.QInt8, extra_options={"MatMulConstBOnly": True},
    )  # fmt: skip
    return {"method": "onnxruntime.quantize_dynamic", "weights": "int8 per channel"}


def _int4(source: Path, destination: Path) -> dict[str, Any]:
    """Every MatMul with a constant weight becomes ONNX Runtime's ``MatMulNBits``: 4-bit
    blocks of 32 along the input axis, the output projection in 8 bits (as llama.cpp
    keeps it).

    A GGUF's Q4_1 block is ``d * q + m`` (q in 0..15, the block's min and max at 0 and 15),
    which ``MatMulNBits`` can hold only with float zero points, and those take ONNX
    Runtime's slow path (10 tokens/s here against 130). So each block keeps its levels and
    scale in ``MatMulNBits`` with the operator's default zero point, and the block offsets
    go in a small float32 product: ``x @ W = MatMulNBits(x) + blocksum(x) @ offsets``,
    where ``blocksum`` adds each block of 32 inputs (one MatMul with a 0/1 matrix, shared
    by the projections that read the same input). Min/max rounding puts Q4_1 weights back
    on exactly their grid; ONNX Runtime's MatMulNBitsQuantizer rounds zero points to
    integers, which moves every block off it (greedy agreement 69 % against 99 %).
    """
    model = onnx.load(str(source))
    initializers = {init.name: init for init in model.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    block_sums: dict[str, str] = {}
    packed = 0
    for node in model.graph.node:
        weight = _constant_weight(node, initializers)
        if weight is None:
            nodes.append(node)
        elif "logits" in node.output:
            nodes.append(_matmul_8bit(model, node, weight))
        else:
            nodes += _matmul_4bit(model, node, weight, block_sums)
        packed += weight is not None
    nodes = [
        _gather_8bit(model, node, numpy_helper.to_array(initializers[node.input[0]]))
        if _is_embedding_lookup(node, initializers)
        else node
        for node in nodes
    ]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {name for node in model.graph.node for name in node.input}
    for name in set(initializers) - used:
        model.graph.initializer.remove(initializers[name])
    if all(opset.domain != "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    onnx.save_model(model, str(destination))
    return {
        "method": "onnxruntime MatMulNBits",
        "weights": (
            f"4-bit blocks of {INT4_BLOCK_SIZE} (scale and float32 offset per block); "
            "output projection and token embedding in 8-bit blocks"
        ),
        "accuracy_level": INT4_ACCURACY_LEVEL,
        "matmuls": packed,
    }


def _constant_weight(node: onnx.NodeProto, initializers: dict[str, Any]) -> np.ndarray | None:
    if node.op_type != "MatMul" or node.input[1] not in initializers:
        return None
    weight = numpy_helper.to_array(initializers[node.input[1]])
    if weight.ndim != 2 or weight.shape[0] % INT4_BLOCK_SIZE:
        return None
    return weight


def _weight_blocks(weight: np.ndarray) -> np.ndarray:
    """[K, N] -> [N, K / block, block] in float64, the layout MatMulNBits stores."""
    rows, columns = weight.shape
    blocks = weight.T.reshape(columns, rows // INT4_BLOCK_SIZE, INT4_BLOCK_SIZE)
    return blocks.astype(np.float64)


def _nbits_node(
    node: onnx.NodeProto, inputs: list[str], output: str, bits: int, shape: tuple[int, int]
) -> onnx.NodeProto:
    return onnx.helper.make_node(
        "MatMulNBits", inputs, [output], name=f"{node.name}_q{bits}", domain="com.microsoft",
        K=shape[0], N=shape[1], bits=bits, block_size=INT4_BLOCK_SIZE,
        accuracy_level=INT4_ACCURACY_LEVEL,
    )  # fmt: skip


def _matmul_8bit(
    model: onnx.ModelProto, node: onnx.NodeProto, weight: np.ndarray
) -> onnx.NodeProto:
    levels, scale, _ = _blocks_8bit(_weight_blocks(weight))
    base = node.input[1]
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(levels, f"{base}_q8"),
            numpy_helper.from_array(scale.reshape(-1), f"{base}_scales"),
        ]
    )
    inputs = [node.input[0], f"{base}_q8", f"{base}_scales"]
    return _nbits_node(node, inputs, node.output[0], 8, weight.shape)


def _matmul_4bit(
    model: onnx.ModelProto, node: onnx.NodeProto, weight: np.ndarray, block_sums: dict[str, str]
) -> list[onnx.NodeProto]:
    rows, _ = weight.shape
    packed, scale, offset = _blocks_4bit(_weight_blocks(weight))
    base, source, output = node.input[1], node.input[0], node.output[0]
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(packed, f"{base}_q4"),
            numpy_helper.from_array(scale.reshape(-1), f"{base}_scales"),
            numpy_helper.from_array(np.ascontiguousarray(offset[..., 0].T), f"{base}_offsets"),
        ]
    )
    new = [_nbits_node(node, [source, f"{base}_q4", f"{base}_scales"], f"{output}_q4", 4,
                       weight.shape)]  # fmt: skip
    if source not in block_sums:
        block_sums[source] = f"{source}_block_sums"
        summer = f"block_sum_matrix_{rows}"
        if summer not in {init.name for init in model.graph.initializer}:
            matrix = np.repeat(
                np.eye(rows // INT4_BLOCK_SIZE, dtype=np.float32), INT4_BLOCK_SIZE, 0
            )
            model.graph.initializer.append(numpy_helper.from_array(matrix, summer))
        new.append(onnx.helper.make_node("MatMul", [source, summer], [block_sums[source]]))
    new += [
        onnx.helper.make_node(
            "MatMul", [block_sums[source], f"{base}_offsets"], [f"{output}_offset"]
        ),
        onnx.helper.make_node("Add", [f"{output}_q4", f"{output}_offset"], [output]),
    ]
    return new


def _is_embedding_lookup(node: onnx.NodeProto, initializers: dict[str, Any]) -> bool:
    if node.op_type != "Gather" or node.input[0] not in initializers:
        return False
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    dims = list(initializers[node.input[0]].dims)
    return axis == 0 and len(dims) == 2 and dims[1] % INT4_BLOCK_SIZE == 0


def _gather_8bit(model: onnx.ModelProto, node: onnx.NodeProto, table: np.ndarray) -> onnx.NodeProto:
    """The token embedding as ``GatherBlockQuantized``: 8-bit symmetric blocks (Q8_0's
    layout, so a GGUF's Q8_0 embedding comes back exactly)."""
    rows, width = table.shape
    blocks = table.reshape(rows, width // INT4_BLOCK_SIZE, INT4_BLOCK_SIZE).astype(np.float64)
    levels, scale, _ = _blocks_8bit(blocks)
    base = node.input[0]
    arrays = {
        f"{base}_q8": levels.reshape(rows, width),
        f"{base}_scales": scale.reshape(rows, -1),
        f"{base}_zp": np.full(scale.shape[:2], 128, dtype=np.uint8),
    }
    model.graph.initializer.extend(numpy_helper.from_array(a, n) for n, a in arrays.items())
    return onnx.helper.make_node(
        "GatherBlockQuantized", [f"{base}_q8", node.input[1], *list(arrays)[1:]],
        list(node.output), name=f"{node.name}_q8", domain="com.microsoft",
        gather_axis=0, quantize_axis=1, block_size=INT4_BLOCK_SIZE, bits=8,
    )  # fmt: skip


def _blocks_4bit(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min/max per block: levels 0..15 two a byte (low nibble first), the scale, and the
    offset that makes ``scale * (level - 8) + offset`` the weight under MatMulNBits'
    default zero point 8."""
    low, high = blocks.min(-1, keepdims=True), blocks.max(-1, keepdims=True)
    scale = np.where(high > low, (high - low) / 15, 1.0)
    levels = np.clip(np.rint((blocks - low) / scale), 0, 15).astype(np.uint8)
    packed = levels[..., 0::2] | (levels[..., 1::2] << 4)
    return packed, scale.astype(np.float32), (low + 8 * scale).astype(np.float32)


def _blocks_8bit(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, None]:
    """Symmetric per block (as Q8_0): levels -127..127 stored around 128."""
    peak = np.abs(blocks).max(-1, keepdims=True)
    scale = np.where(peak > 0, peak / 127, 1.0)
    levels = np.clip(np.rint(blocks / scale), -127, 127) + 128
    return levels.astype(np.uint8), scale.astype(np.float32), None


@contextlib.contextmanager
def _quiet_quantizers() -> Iterator[None]:
    """ONNX Runtime's quantizers log a line per node and advice meant for image models."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def fold_constant_transposes(model: onnx.ModelProto) -> None:
    """Transpose(initializer) -> a transposed initializer, so quantizers see a constant
    weight. The original stays when something else (the embedding Gather) reads it."""
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    for node in list(graph.node):
        if node.op_type != "Transpose" or node.input[0] not in initializers:
            continue
        array = numpy_helper.to_array(initializers[node.input[0]])
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        folded = np.ascontiguousarray(np.transpose(array, perm))
        graph.initializer.append(numpy_helper.from_array(folded, node.output[0]))
        graph.node.remove(node)
        readers[node.input[0]] -= 1
        if readers[node.input[0]] == 0:
            graph.initializer.remove(initializers.pop(node.input[0]))


def variant_recipe(folder: Path) -> dict[str, Any]:
    """The recipe a variant's generation.json records (source hash, conversion, variant)."""
    generation = json.loads((Path(folder) / GENERATION_FILENAME).read_text())
    recipe: dict[str, Any] = generation["source"]["recipe"]
    return recipe


def _record_variant(folder: Path, recipe: dict[str, Any]) -> None:
    path = folder / GENERATION_FILENAME
    generation = json.loads(path.read_text())
    generation["source"] = {**generation.get("source", {}), "recipe": recipe}
    path.write_text(json.dumps(generation, indent=2) + "\n")
