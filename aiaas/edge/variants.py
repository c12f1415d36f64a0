"""The int8 or 4-bit variant a bundle ships: the one `aiaas compress` made from the
source version if there is one (registered as its descendant, or for a local language
model a version folder beside it), else made here with the same torch-free quantizers
(`aiaas compress llm` for language models, dynamic int8 for the others).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

from aiaas.edge.source import (
    GENERATION_FILENAME,
    MODEL_FILENAME,
    Source,
    folder_variant,
    record_variant,
    source_from_record,
)
from aiaas.errors import InvalidArgument

VARIANTS = ("fp32", "int8", "int4")


def choose(source: Source, variant: str | None, work: Path, registry_uri: str | None) -> Source:
    """The version folder to bundle for ``variant`` (None: the source as it is)."""
    if variant is None or variant == source.variant:
        return source
    if variant not in VARIANTS[1:]:
        raise InvalidArgument(f"--variant {variant}: use int8 or int4")
    if source.variant != "fp32":
        raise InvalidArgument(
            f"{source.uri} is already the {source.variant} variant; bundle its fp32 source "
            f"to get {variant}"
        )
    if source.registry is not None:
        found = registered_variant(source, variant, work, registry_uri)
    else:
        found = sibling_variant(source, variant)
    return found if found is not None else make_variant(source, variant, work)


def sibling_variant(source: Source, variant: str) -> Source | None:
    """A version folder beside a local language model's that `aiaas compress llm` made
    from the same GGUF file (its generation.json says the variant and the file's hash)."""
    digest = _source_digest(source.folder)
    if digest is None:
        return None
    for sibling in sorted(source.folder.parent.iterdir()):
        if (
            sibling != source.folder
            and sibling.name.isdigit()
            and (sibling / MODEL_FILENAME).is_file()
            and folder_variant(sibling) == variant
            and _source_digest(sibling) == digest
        ):
            return dataclasses.replace(
                source, folder=sibling, version=int(sibling.name), uri=str(sibling),
                variant=variant,
            )  # fmt: skip
    return None


def _source_digest(folder: Path) -> str | None:
    try:
        generation = json.loads((folder / GENERATION_FILENAME).read_text())
        digest = generation["source"]["recipe"]["gguf_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return str(digest) if digest else None


def registered_variant(
    source: Source, variant: str, work: Path, registry_uri: str | None
) -> Source | None:
    """A descendant of the source version (nearest first) that is ``variant``."""
    from aiaas.registry import Registry

    with Registry.open(registry_uri, create=False) as registry:
        lineage = registry.lineage(source.uri)
        for uri in _descendants(lineage.descendants):
            record = registry.resolve(uri)
            if record_variant(record.to_dict()) == variant:
                folder = registry.download_version(record, work / f"{record.name}-{record.version}")
                return source_from_record(record.to_dict(), folder)
    return None


def _descendants(nodes: tuple) -> Iterator[str]:  # type: ignore[type-arg]
    """Existing descendants, breadth first."""
    level = list(nodes)
    while level:
        yield from (node.ref.uri for node in level if node.exists)
        level = [child for node in level for child in node.links]


def make_variant(source: Source, variant: str, work: Path) -> Source:
    if source.task == "text-generation":
        from aiaas.export.llm_variants import quantize_version

        folder = quantize_version(source.folder, work / "variant" / source.name / "1", variant)
        recipe = {"made_by": "aiaas edge bundle", "as": f"aiaas compress llm --variant {variant}"}
    elif variant == "int4":
        raise InvalidArgument(
            "--variant int4 is for language models (aiaas compress llm --variant int4); "
            "use --variant int8 for this model"
        )
    else:
        from aiaas.compress.quantize import quantize_dynamic

        folder = work / "variant-int8"
        folder.mkdir(parents=True)
        for item in source.folder.iterdir():
            if item.is_file() and item.name != MODEL_FILENAME and not item.name.startswith("."):
                shutil.copyfile(item, folder / item.name)
        quantize_dynamic(source.folder / MODEL_FILENAME, folder / MODEL_FILENAME)
        recipe = {"made_by": "aiaas edge bundle", "as": "aiaas compress --quantize dynamic"}
    return dataclasses.replace(source, folder=folder, variant=variant, made=recipe)
