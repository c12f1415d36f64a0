"""What a registry store does, whatever keeps the rows.

The SQLAlchemy store is the one implementation; the `Registry` API and its tests
talk to this interface only, so that nothing outside `sql_*` sees a session or a row.
Every method raises NotFound for an unknown model, version or alias.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from aiaas.registry.records import (
    DeviceReport,
    Lineage,
    MetricFilter,
    ModelVersion,
    NewVersion,
    RegisteredModel,
)


class AbstractStore(ABC):
    # --- models -------------------------------------------------------------------------------
    @abstractmethod
    def create_model(
        self, name: str, description: str | None = None, tags: dict[str, str] | None = None
    ) -> RegisteredModel:
        """AlreadyExists if the name is taken."""

    @abstractmethod
    def get_model(self, name: str) -> RegisteredModel: ...

    @abstractmethod
    def list_models(self) -> list[RegisteredModel]: ...

    @abstractmethod
    def delete_model(self, name: str) -> None:
        """FailedPrecondition while any alias of the model exists."""

    @abstractmethod
    def set_model_tags(
        self, name: str, tags: dict[str, str], remove: tuple[str, ...] = ()
    ) -> None: ...

    # --- versions -----------------------------------------------------------------------------
    @abstractmethod
    def create_version(self, name: str, new: NewVersion) -> ModelVersion:
        """Creates the model if needed and gives the version the next number, atomically."""

    @abstractmethod
    def get_version(self, name: str, version: int) -> ModelVersion: ...

    @abstractmethod
    def get_latest_version(self, name: str) -> ModelVersion: ...

    @abstractmethod
    def list_versions(self, name: str) -> list[ModelVersion]: ...

    @abstractmethod
    def delete_version(self, name: str, version: int) -> None:
        """FailedPrecondition while an alias points at the version."""

    @abstractmethod
    def set_version_tags(
        self, name: str, version: int, tags: dict[str, str], remove: tuple[str, ...] = ()
    ) -> None: ...

    @abstractmethod
    def search_versions(
        self,
        tags: dict[str, str],
        metrics: list[MetricFilter],
        name: str | None = None,
    ) -> list[ModelVersion]: ...

    @abstractmethod
    def lineage(self, name: str, version: int) -> Lineage: ...

    # --- aliases ------------------------------------------------------------------------------
    @abstractmethod
    def set_alias(self, name: str, alias: str, version: int) -> None: ...

    @abstractmethod
    def delete_alias(self, name: str, alias: str) -> None: ...

    @abstractmethod
    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion: ...

    # --- edge devices -------------------------------------------------------------------------
    @abstractmethod
    def put_device(self, report: DeviceReport) -> DeviceReport:
        """Insert or replace the device's report; returns it with the registry's time."""

    @abstractmethod
    def list_devices(self, model: str | None = None) -> list[DeviceReport]:
        """Every device's last report (of one model), by device id."""

    # --- artifacts ----------------------------------------------------------------------------
    @abstractmethod
    def referenced_blobs(self) -> set[str]:
        """Every sha256 that some version's files name: what `gc` must keep."""

    @abstractmethod
    def close(self) -> None: ...
