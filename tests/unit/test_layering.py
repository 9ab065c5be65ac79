"""The import direction between packages (core ← web layer ← operator tools), and the school
scope by construction: route modules build no queries of school-owned tables, every handler
takes the school, and every public query function requires a `SchoolScope`."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(package: str) -> Iterator[tuple[Path, str]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield path, node.module
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    yield path, alias.name


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("edge_bridge", ("api", "edge_ops")), ("api", ("edge_ops",))],
)
def test_package_imports_nothing_above_it(package: str, forbidden: tuple[str, ...]) -> None:
    upward = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path, module in _imports(package)
        if module.split(".")[0] in forbidden
    ]
    assert upward == []


# --- the school scope: route modules hold no queries, queries take the school -----------------

# Modules whose every handler serves one school's staff: each takes the school.
SCOPED_ROUTE_MODULES = [
    "api.routes.attendance",
    "api.routes.devices",
    "api.routes.directory",
    "api.routes.groups",
    "api.routes.me",
    "api.routes.occupancy",
    "api.routes.ogs",
    "api.sse",
]
# Every module that serves requests builds no query of a school-owned table itself: the
# scoped ones above, /health and /ready, and the operator's /api/schools. Left out:
# api.routes.auth, whose login finds a staff member by email before any school is known
# (emails are global; the school then comes from that row).
QUERY_FREE_MODULES = [*SCOPED_ROUTE_MODULES, "api.routes.health", "api.routes.schools"]
QUERY_BUILDERS = frozenset(
    {"select", "col", "func", "or_", "and_", "text", "insert", "update", "delete", "exists"}
)
OWNED_MODELS = frozenset(
    {
        "Room",
        "Staff",
        "OgsGroup",
        "OgsGroupLeader",
        "Student",
        "RfidTag",
        "Device",
        "ActiveGroup",
        "Supervision",
        "Visit",
    }
)


def _route_module_path(name: str) -> Path:
    return ROOT.joinpath(*name.split(".")).with_suffix(".py")


def _query_imports(path: Path) -> list[str]:
    """Imports of `path` that would let it build a query of a school-owned table itself."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [
                f"import {alias.name}"
                for alias in node.names
                if alias.name.split(".")[0] in {"sqlmodel", "sqlalchemy"}
                or alias.name in {"edge_bridge.models", "api.routes"}
                or alias.name.startswith("api.routes.")
            ]
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            names = {alias.name for alias in node.names}
            if root in {"sqlmodel", "sqlalchemy"}:
                wanted = names & QUERY_BUILDERS
            elif node.module == "edge_bridge.models":
                wanted = names & OWNED_MODELS
            elif node.module == "edge_bridge" and "models" in names:
                wanted = {"models"}
            elif node.module == "api.routes" or node.module.startswith("api.routes."):
                wanted = names  # one route module's helpers are not another's queries
            else:
                wanted = set()
            found += [f"from {node.module} import {name}" for name in sorted(wanted)]
    return found


def test_every_route_module_is_checked() -> None:
    modules = {f"api.routes.{path.stem}" for path in (ROOT / "api" / "routes").glob("[!_]*.py")}
    assert modules - {"api.routes.auth"} <= set(QUERY_FREE_MODULES)


@pytest.mark.parametrize("module", QUERY_FREE_MODULES)
def test_route_module_builds_no_query_of_a_school_owned_table(module: str) -> None:
    assert _query_imports(_route_module_path(module)) == []


def test_the_query_import_check_sees_a_route_module_that_queries_by_itself(
    tmp_path: Path,
) -> None:
    leaky = tmp_path / "leaky.py"
    leaky.write_text(
        "import sqlalchemy as sa\n"
        "from sqlmodel import Session, col, select\n"
        "from edge_bridge.models import Student, utcnow\n"
        "from api.routes.groups import require_supervisor\n",
        encoding="utf-8",
    )

    assert _query_imports(leaky) == [
        "import sqlalchemy",
        "from sqlmodel import col",
        "from sqlmodel import select",
        "from edge_bridge.models import Student",
        "from api.routes.groups import require_supervisor",
    ]


def _depends_on(dependant: Any, call: Callable[..., Any]) -> bool:
    return any(sub.call is call or _depends_on(sub, call) for sub in dependant.dependencies)


@pytest.mark.parametrize("module", SCOPED_ROUTE_MODULES)
def test_every_handler_of_the_route_module_takes_the_school(module: str) -> None:
    from fastapi.routing import APIRoute

    from api.deps import current_school

    router = importlib.import_module(module).router
    routes = [route for route in router.routes if isinstance(route, APIRoute)]

    assert routes, module
    unscoped = [route.path for route in routes if not _depends_on(route.dependant, current_school)]
    assert unscoped == []


def _query_functions() -> Iterator[tuple[str, Callable[..., Any]]]:
    import edge_bridge.queries as package

    modules = [package] + [
        importlib.import_module(f"{package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
    ]
    for module in modules:
        for name, value in vars(module).items():
            if inspect.isfunction(value) and value.__module__ == module.__name__:
                yield f"{module.__name__}.{name}", value


def test_every_public_query_function_takes_a_school_scope() -> None:
    from edge_bridge.queries import SchoolScope

    functions = dict(_query_functions())
    unscoped = [
        name
        for name, function in functions.items()
        if not name.rsplit(".", 1)[1].startswith("_")
        and all(
            parameter.annotation is not SchoolScope
            for parameter in inspect.signature(function, eval_str=True).parameters.values()
        )
    ]

    assert "edge_bridge.queries.groups.list_active_groups" in functions  # the walk finds them
    assert unscoped == []
