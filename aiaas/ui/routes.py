"""The catalogue at `/ui`: server-rendered pages over the registry (when the server has
one) and the model repository, with this server's live state of each version.

Every page reads without JavaScript; `static/catalogue.js` adds the live refresh, the
try-it form, the chat box and the admin actions. Every asset is served from here
(no CDN), and the Content-Security-Policy allows scripts and styles from here only.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from aiaas.errors import AiaasError, InvalidArgument, NotFound, Unauthenticated
from aiaas.serve.dataplane import DataPlane
from aiaas.serve.repository import ModelVersion
from aiaas.serve.settings import ControlMode
from aiaas.ui import pages
from aiaas.ui.admin import AdminActions
from aiaas.ui.catalogue import Catalogue, ModelInfo, VersionInfo, merged
from aiaas.ui.live import live_state
from aiaas.ui.repository_catalogue import FileHashes, RepositoryCatalogue
from aiaas.ui.search import parse_query

if TYPE_CHECKING:
    from aiaas.registry.api import Registry
    from aiaas.ui.registry_catalogue import RegistryCatalogue

log = logging.getLogger(__name__)

PREFIX = "/ui"
HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
Endpoint = Callable[[Request], Awaitable[Response]]


def template_environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(pages.FILTERS)
    return environment


class CatalogueUI:
    def __init__(
        self,
        dataplane: DataPlane,
        *,
        registry: Registry | None = None,
        admin_token: str | None = None,
    ) -> None:
        self.dataplane = dataplane
        self.repository = dataplane.repository
        self.registry_catalogue: RegistryCatalogue | None = None
        if registry is not None:
            from aiaas.ui.registry_catalogue import RegistryCatalogue

            self.registry_catalogue = RegistryCatalogue(registry)
        self.admin = AdminActions(dataplane, self.registry_catalogue, admin_token)
        self.templates = template_environment()
        self.hashes = FileHashes()

    def routes(self) -> list[BaseRoute]:
        model = f"{PREFIX}/models/{{name}}"
        version = f"{model}/versions/{{version:int}}"
        api = f"{PREFIX}/api/models/{{name}}"
        return [
            Route(PREFIX, self._page(self.list_page), methods=["GET"]),
            Route(model, self._page(self.model_page), methods=["GET"]),
            Route(version, self._page(self.version_page), methods=["GET"]),
            Route(f"{version}/live", self._page(self.live_fragment), methods=["GET"]),
            Mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="ui-static"),
            Route(f"{PREFIX}/api/admin", self._api(self.admin.check), methods=["GET"]),
            Route(f"{api}/aliases", self._api(self.admin.move_alias), methods=["POST"]),
            Route(
                f"{api}/versions/{{version:int}}/tags",
                self._api(self.admin.add_tag),
                methods=["POST"],
            ),
            Route(f"{api}/load", self._api(self.admin.load), methods=["POST"]),
            Route(f"{api}/unload", self._api(self.admin.unload), methods=["POST"]),
        ]

    # ---- reading the catalogues ----------------------------------------------------

    def _models(self, loaded: list[ModelVersion]) -> list[ModelInfo]:
        """Blocking: the registry's models, then the repository's that it does not have."""
        if self.registry_catalogue is None:
            return self._folders(loaded, frozenset()).models()
        described = self.registry_catalogue.models()
        exclude = frozenset(model.name for model in described)
        return merged(described, self._folders(loaded, exclude).models())

    def _catalogue_of(self, name: str, loaded: list[ModelVersion]) -> tuple[Catalogue, ModelInfo]:
        """Blocking: the catalogue that describes a model, and the model."""
        registry = self.registry_catalogue
        if registry is not None:
            try:
                return registry, registry.model(name)
            except (NotFound, InvalidArgument):  # an invalid registry name is no model there
                pass
        exclude = registry.names() if registry is not None else frozenset()
        catalogue = self._folders(loaded, exclude)
        return catalogue, catalogue.model(name)

    def _folders(self, loaded: list[ModelVersion], exclude: frozenset[str]) -> RepositoryCatalogue:
        return RepositoryCatalogue(self.repository, loaded, exclude, self.hashes)

    def _common(self) -> dict[str, Any]:
        return {
            "admin_enabled": self.admin.enabled,
            "has_registry": self.registry_catalogue is not None,
            "explicit_mode": self.repository.mode == ControlMode.EXPLICIT,
        }

    # ---- pages ---------------------------------------------------------------------

    async def list_page(self, request: Request) -> Response:
        text = request.query_params.get("q", "")
        models = await run_in_threadpool(self._models, self.repository.loaded_versions())
        try:
            query = parse_query(text)
        except InvalidArgument as error:
            return self._render(
                "list.html", 400, query_text=text, rows=[], total=len(models), error=error.message
            )
        rows = pages.list_rows(models, query, self.repository)
        return self._render("list.html", query_text=text, rows=rows, total=len(models), error="")

    async def model_page(self, request: Request) -> Response:
        loaded = self.repository.loaded_versions()
        _, model = await run_in_threadpool(self._catalogue_of, request.path_params["name"], loaded)
        view = pages.model_view(model, self.repository)
        return self._render("model.html", **view)

    async def version_page(self, request: Request) -> Response:
        name, number = request.path_params["name"], request.path_params["version"]
        loaded = self.repository.loaded_versions()
        catalogue, model = await run_in_threadpool(self._catalogue_of, name, loaded)
        parent_of = functools.partial(self._parent_of, loaded=loaded)
        view = await run_in_threadpool(pages.version_view, catalogue, model, number, parent_of)
        tradeoffs = pages.tradeoffs(self.repository, view["version"], view["parents"])
        await self.repository.hosting.refresh()
        live = live_state(self.repository, name, number)
        parameters = pages.served_parameters(self.repository, name, number)
        return self._render(
            "version.html", tradeoffs=tradeoffs, live=live, parameters=parameters, **view
        )

    async def live_fragment(self, request: Request) -> Response:
        name, number = request.path_params["name"], request.path_params["version"]
        await self.repository.hosting.refresh()
        live = live_state(self.repository, name, number)
        return self._render("_live.html", live=live)

    def _parent_of(self, name: str, version: int, loaded: list[ModelVersion]) -> VersionInfo | None:
        """A parent version's record from whichever catalogue has it (None if gone)."""
        try:
            return self._catalogue_of(name, loaded)[1].version(version)
        except (NotFound, InvalidArgument):
            return None

    def _render(self, template: str, status_code: int = 200, **context: Any) -> Response:
        html = self.templates.get_template(template).render(**self._common(), **context)
        return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)

    def _page(self, endpoint: Endpoint) -> Endpoint:
        """Our errors as a page with their status; anything else logged, a plain 500 page."""

        async def page(request: Request) -> Response:
            try:
                return await endpoint(request)
            except AiaasError as error:
                return self._render(
                    "error.html", error.http_status, message=error.message, status=error.http_status
                )
            except Exception:
                log.exception("catalogue page failed on %s", request.url.path)
                return self._render("error.html", 500, message="internal error", status=500)

        return page

    def _api(self, endpoint: Endpoint) -> Endpoint:
        async def api(request: Request) -> Response:
            try:
                return await endpoint(request)
            except AiaasError as error:
                headers = (
                    {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthenticated) else {}
                )
                return JSONResponse({"error": error.message}, error.http_status, headers=headers)
            except Exception:
                log.exception("catalogue action failed on %s", request.url.path)
                return JSONResponse({"error": "internal server error"}, 500)

        return api
