"""The dashboard's two Starlette applications: the coordinator's (its studies) and a partner's (its node).

Pages are rendered on the server from Jinja2 templates with autoescaping on (trails are written by partners and
the coordinator: every string from them is text, never markup); no page runs JavaScript. Numbers come from
results.json and the trails as they are, formatted as the report formats them; plots are the PNG files the
report drew. Verification runs on demand (a POST): it reads, and writes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from federated.dashboard.monitoring import ALERT_COLUMNS, load_monitoring, timeline_chart
from federated.dashboard.partner import PartnerSources, load_partner
from federated.dashboard.security import Guard, allowed_hosts
from federated.dashboard.studies import (
    MEDIA_TYPES,
    OUTPUT_TARGET,
    Sources,
    discover,
    load_study,
    privacy_spent,
    verify,
)
from federated.reporting.formatting import format_value, not_estimable
from federated.reporting.regression_section import CARD_METRICS

HERE = Path(__file__).resolve().parent
POOLED_METRICS = ("count", "accuracy", "precision", "recall", "f1", "auroc", "auroc_bound", "brier", "ece", "log_loss")
REGRESSION_METRICS = CARD_METRICS


def _templates() -> Jinja2Templates:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      extensions=["jinja2.ext.do"],
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = format_value
    env.globals["not_estimable"] = not_estimable
    env.filters["scalar"] = lambda value: format_value(value) if isinstance(value, (int, float, type(None))) else str(value)
    return Jinja2Templates(env=env)


TEMPLATES = _templates()


def _link(request: Request, path: str) -> str:
    """A path on this dashboard, carrying the token when the page was asked for with ?token= (no cookies)."""
    token = request.query_params.get("token")
    return path + ("?" + urlencode({"token": token}) if token else "")


def _page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    def link(*parts: object) -> str:
        return _link(request, "/" + "/".join(quote(str(p), safe="") for p in parts))

    return TEMPLATES.TemplateResponse(request, template, {"link": link, **context}, status_code=status_code)


def _study(request: Request) -> tuple[Sources, Any]:
    sources: Sources = request.app.state.sources
    studies = discover(sources.output)
    name = request.path_params["study"]
    if name not in studies:
        raise HTTPException(404, "no such study")
    return sources, load_study(name, studies[name], sources)


def studies_page(request: Request) -> Response:
    sources: Sources = request.app.state.sources
    views = [load_study(name, path, sources) for name, path in discover(sources.output).items()]
    return _page(request, "studies.html", studies=[(view, load_monitoring(view)) for view in views])


def study_page(request: Request) -> Response:
    sources, view = _study(request)
    regression = (view.results or {}).get("task") == "regression"  # its own metric names (MAE, RMSE, R², ...)
    return _page(request, "study.html", study=view, final=view.final, metrics=REGRESSION_METRICS if regression else POOLED_METRICS,
                 spent=privacy_spent(view, sources), output_target=OUTPUT_TARGET,
                 monitoring=load_monitoring(view), alert_columns=ALERT_COLUMNS)


def monitoring_chart(request: Request) -> Response:
    _, view = _study(request)
    chart = timeline_chart(view, request.path_params["index"])
    if chart is None:
        raise HTTPException(404, "no such monitoring chart")
    return Response(chart, media_type="image/png")


def study_file(request: Request) -> Response:
    _, view = _study(request)
    name = request.path_params["name"]
    if name not in view.files:
        raise HTTPException(404, "not a file this dashboard serves")
    path = view.files[name]
    attachment = path.suffix == ".zip"
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "text/plain; charset=utf-8"),
                        filename=name if attachment else None,
                        content_disposition_type="attachment" if attachment else "inline")


def verify_page(request: Request) -> Response:
    sources, view = _study(request)
    target = request.path_params["target"]
    if target != OUTPUT_TARGET and target not in view.packs:
        raise HTTPException(404, "nothing to verify by that name")
    verdict = verify(view, target, sources)
    return _page(request, "verdict.html", study=view, target=target, verdict=verdict,
                 status_code=200)


def partner_page(request: Request) -> Response:
    return _page(request, "partner.html", view=load_partner(request.app.state.partner))


def _error_page(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return _page(request, "error.html", status_code=status, status=status, detail=detail)


def _app(routes: list[Any], *, host: str, token: str | None) -> Starlette:
    routes = [*routes, Mount("/static", StaticFiles(directory=HERE / "static"), name="static")]
    middleware = [Middleware(Guard, token=token, allowed_hosts=allowed_hosts(host, token))]
    return Starlette(routes=routes, middleware=middleware, exception_handlers={HTTPException: _error_page})


def coordinator_app(sources: Sources, *, host: str = "127.0.0.1", token: str | None = None) -> Starlette:
    """Studies under `sources.output`: `/`, `/study/NAME`, `/study/NAME/file/FILE`, `/study/NAME/monitoring/I.png`,
    POST `/study/NAME/verify/TARGET`."""
    app = _app([
        Route("/", studies_page),
        Route("/study/{study}", study_page),
        Route("/study/{study}/file/{name}", study_file),
        Route("/study/{study}/monitoring/{index:int}.png", monitoring_chart),
        Route("/study/{study}/verify/{target}", verify_page, methods=["POST"]),
    ], host=host, token=token)
    app.state.sources = sources
    return app


def partner_app(sources: PartnerSources, *, host: str = "127.0.0.1", token: str | None = None) -> Starlette:
    """A partner's node: `/` (tasks, ε, contract)."""
    app = _app([Route("/", partner_page)], host=host, token=token)
    app.state.partner = sources
    return app
