"""The catalogue of a registry: its models, versions, aliases, tags, metrics, lineage
and (once the registry keeps them) the edge devices' reports. Imported only when the
server has a registry, so a server without one never loads SQLAlchemy."""

from __future__ import annotations

from typing import Any

from aiaas.errors import NotFound
from aiaas.registry.api import Registry
from aiaas.registry.records import ModelVersion, RegisteredModel
from aiaas.registry.uri import version_uri
from aiaas.ui.catalogue import FileInfo, Lineage, ModelInfo, VersionInfo


class RegistryCatalogue:
    """Blocking (database queries): the routes call it off the event loop."""

    source = "registry"

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def names(self) -> frozenset[str]:
        return frozenset(model.name for model in self.registry.list_models())

    def models(self) -> list[ModelInfo]:
        return [self._model(model) for model in self.registry.list_models()]

    def model(self, name: str) -> ModelInfo:
        return self._model(self.registry.get_model(name))

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self.registry.set_alias(name, alias, version)

    def add_tag(self, name: str, version: int, key: str, value: str) -> None:
        self.registry.tag(version_uri(name, version), {key: value})

    def lineage(self, name: str, version: int) -> Lineage | None:
        found = self.registry.lineage(version_uri(name, version))
        return Lineage(found.ancestors, found.descendants)

    def devices(self, name: str, version: int) -> list[dict[str, Any]] | None:
        """The edge agents' reports of this version, when this registry keeps them."""
        reports = getattr(self.registry, "devices", None)
        if reports is None:
            return None
        try:
            found = reports(name)
        except NotFound:
            return []
        return [report.to_dict() for report in found if report.version == version]

    def _model(self, model: RegisteredModel) -> ModelInfo:
        versions = tuple(_version(v) for v in self.registry.versions(model.name))
        return ModelInfo(
            model.name,
            self.source,
            versions,
            description=model.description,
            tags=dict(model.tags),
            aliases=dict(model.aliases),
        )


def _version(record: ModelVersion) -> VersionInfo:
    return VersionInfo(
        name=record.name,
        version=record.version,
        description=record.description,
        created_at=record.created_at,
        sha256=record.sha256,
        size_bytes=record.size_bytes,
        files=tuple(FileInfo(f.path, f.size_bytes, f.sha256) for f in record.files),
        inputs=record.signature.inputs,
        outputs=record.signature.outputs,
        tags=dict(record.tags),
        metrics=dict(record.metrics),
        parents=tuple((parent.name, parent.version) for parent in record.parents),
        run_id=record.run_id,
        params=record.params,
        recipe=record.recipe,
        aliases=record.aliases,
    )
