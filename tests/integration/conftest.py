"""Fixtures for the integration suites (real Mongrel2, real processes, real sockets).

Fixtures (all function-scoped, everything started is stopped at teardown, and the logs
of every process are printed when the test fails):

``handler_factory``   -> harness.HandlerFactory: ``.start(app_ref, send_spec, recv_spec,
                         sender_id=None, extra_args=(), cwd=None, env=None) -> HandlerProcess``
``mongrel2_factory``  -> harness.Mongrel2Factory: ``.start(protocol="json"|"tnetstring",
                         content_length=None, static_dirs=None, settings=None, ...) ->
                         RunningMongrel2`` (several per test allowed)
``gateway_factory``   -> harness.GatewayFactory (the built-in gateway, same Frontend API)
``frontend``          -> a started front end (``.kind``, ``.host``, ``.http_port``, ``.uuid``,
                         ``.send_spec``, ``.recv_spec``, ``.url(path)``,
                         ``.start_handler(app_ref, **kw)``); parametrized over FRONTEND_KINDS.
                         Options: ``@pytest.mark.frontend_options(protocol="tnetstring",
                         content_length=1000)``.
``free_port``         -> the harness.free_port function.

Policy: a front end that is missing or cannot start skips the test, or FAILS it when
the environment has CI=true.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from . import harness
from .harness import (
    Frontend,
    GatewayFactory,
    HandlerFactory,
    Mongrel2Factory,
)

#: The front ends the ``frontend`` fixture runs every test against. Adding "gateway"
#: here runs the acceptance suites a second time behind the built-in gateway.
#: TAKEFIVE_FRONTENDS=gateway (comma-separated) overrides it for one run.
FRONTEND_KINDS = ["mongrel2", "gateway"]
if os.environ.get("TAKEFIVE_FRONTENDS"):
    FRONTEND_KINDS = os.environ["TAKEFIVE_FRONTENDS"].split(",")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "frontend_options(**kw): options for the frontend fixture "
        "(protocol='tnetstring', content_length=N, ...)",
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    node = request.node
    return any(
        getattr(getattr(node, f"rep_{when}", None), "failed", False) for when in ("setup", "call")
    )


@pytest.fixture
def free_port() -> Callable[..., int]:
    """``free_port(host="127.0.0.1") -> int``: a free TCP port (bound to 0 and released)."""
    return harness.free_port


@pytest.fixture
def handler_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[HandlerFactory]:
    factory = HandlerFactory(tmp_path / "process-logs")
    try:
        yield factory
    finally:
        factory.close()
        if _failed(request) and factory.processes:
            print("\n===== process logs =====\n" + factory.report())


@pytest.fixture
def mongrel2_factory(
    tmp_path: Path, request: pytest.FixtureRequest, handler_factory: HandlerFactory
) -> Iterator[Mongrel2Factory]:
    factory = Mongrel2Factory(tmp_path / "mongrel2", handler_factory)
    try:
        yield factory
    finally:
        factory.close()
        if _failed(request) and factory.servers:
            print("\n===== mongrel2 logs =====\n" + factory.report())


@pytest.fixture
def gateway_factory(handler_factory: HandlerFactory) -> Iterator[GatewayFactory]:
    factory = GatewayFactory(handler_factory)
    try:
        yield factory
    finally:
        factory.close()


def _frontend_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("frontend_options"))):
        options.update(marker.kwargs)
    return options


@pytest.fixture(params=FRONTEND_KINDS)
def frontend(request: pytest.FixtureRequest) -> Frontend:
    """A started front end; handlers started with ``frontend.start_handler(app_ref)``."""
    options = _frontend_options(request)
    if request.param == "mongrel2":
        factory: Mongrel2Factory = request.getfixturevalue("mongrel2_factory")
        return factory.start(**options)
    if request.param == "gateway":
        gateways: GatewayFactory = request.getfixturevalue("gateway_factory")
        return gateways.start(**options)
    raise AssertionError(f"unknown front end {request.param!r}")
