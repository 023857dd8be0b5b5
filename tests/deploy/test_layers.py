"""The folder layout is the architecture: libs/ is the shared vocabulary and knows no service,
no tool and no test harness; ``make run`` needs no test tooling.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Importable names of every package that sits above libs/.
ABOVE_LIBS = {
    "yobidashi_ingest",
    "yobidashi_dialer",
    "yobidashi_acker",
    "yobidashi_cli",
    "yobidashi_devstack",
    "yobidashi_twilio_sim",
    "yobidashi_zabbix_standin",
    "yobidashi_harness",
    "yobidashi_testing",
}
TEST_TOOLING = {"pytest", "playwright", "testcontainers", "dukpy", "yobidashi-testing"}


def imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_nothing_under_libs_imports_a_service_a_tool_or_the_harness() -> None:
    files = sorted((REPO / "libs").rglob("*.py"))
    assert files, "libs/ has Python files to check"
    wrong = {
        str(path.relative_to(REPO)): sorted(imported_packages(path) & ABOVE_LIBS)
        for path in files
        if imported_packages(path) & ABOVE_LIBS
    }
    assert wrong == {}


def test_the_check_sees_an_import_from_above(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from yobidashi_dialer.core import decide\nimport yobidashi_harness.x\n")
    assert imported_packages(module) & ABOVE_LIBS == {"yobidashi_dialer", "yobidashi_harness"}


def locked_dependencies(package: str) -> set[str]:
    """Everything ``package`` pulls in, by the lock file (its dev groups left out)."""
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    by_name = {p["name"]: p for p in lock["package"]}
    seen: set[str] = set()
    todo = [package]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [d["name"] for d in by_name[name].get("dependencies", [])]
    return seen - {package}


def test_make_run_needs_no_test_tooling() -> None:
    pulled = locked_dependencies("yobidashi-devstack")
    assert "yobidashi-harness" in pulled
    assert pulled & TEST_TOOLING == set()


def test_the_services_need_neither_the_harness_nor_test_tooling() -> None:
    for service in ("yobidashi-ingest", "yobidashi-dialer", "yobidashi-acker", "yobidashi-cli"):
        pulled = locked_dependencies(service)
        assert pulled & (TEST_TOOLING | {"yobidashi-harness"}) == set(), service
