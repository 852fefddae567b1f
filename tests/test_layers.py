"""The layers of docs/architecture.md, checked against the code: what each package imports.

Read from the sources (not by importing), so a lazy import inside a function counts too.
"""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "src" / "visionwatch"

# Pure modules: no I/O, no framework; everything else may use them.
PURE = {
    *("timeutil", "items", "histograms", "rollups"),
    *("alert_rules", "capture", "security", "verdicts", "event_facts", "drift", "packed"),
}
# Foundations with I/O but no dependency of their own: anything, the SDK too, may use them.
FOUNDATIONS = {"files"}
# What each part may import of visionwatch, besides itself and the pure modules. The
# layers, bottom up: pure, config; db and images (files); store; the services; http; then
# api and web side by side; app, cli and demo put it all together.
ALLOWED = {
    "config": set(),
    "compat": set(),
    "db": set(),
    "images": set(),
    "store": {"db", "images"},
    "aggregator": {"db", "store"},
    "jobs": {"db"},
    "parsers": {"compat", "store"},
    "metrics": {"db", "store"},
    "logs": {"config"},
    "retention": {"aggregator", "config", "db", "images", "store"},
    "alerts": {"aggregator", "config", "db", "store"},
    "http": {"config", "db", "images", "store"},
    "api": {
        *("alerts", "compat", "config", "db", "http", "images"),
        *("metrics", "parsers", "ratelimit", "store"),
    },
    "web": {"alerts", "config", "db", "http", "images", "store"},
    "ratelimit": set(),
    # The SDK ships alone in its wheel: it may import nothing of the server.
    "client": set(),
}
COMPOSERS = {"app", "cli", "demo", "__main__", "__init__"}


def part_of(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


def imports_by_part() -> dict[str, dict[str, set[str]]]:
    """part -> imported part -> the files that import it."""
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in SOURCE.rglob("*.py"):
        relative = path.relative_to(SOURCE)
        part = relative.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
                if node.module == "visionwatch":
                    names = [f"visionwatch.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name == "visionwatch" or name.startswith("visionwatch."):
                    found[part][part_of(name)].add(str(relative))
    return found


IMPORTS = imports_by_part()


def test_every_part_is_placed_in_a_layer() -> None:
    parts = {path.name.removesuffix(".py") for path in SOURCE.iterdir()} - {"__pycache__"}
    unplaced = parts - PURE - FOUNDATIONS - ALLOWED.keys() - COMPOSERS - {"py.typed", "static"}
    assert not unplaced, f"say where these belong, here and in docs/architecture.md: {unplaced}"


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_each_part_imports_only_what_is_below_it(part: str) -> None:
    wrong = {
        imported: sorted(files)
        for imported, files in IMPORTS[part].items()
        if imported != part and imported not in PURE | FOUNDATIONS and imported not in ALLOWED[part]
    }
    assert not wrong, f"{part} imports {wrong}"


@pytest.mark.parametrize("part", sorted(PURE))
def test_pure_modules_import_only_pure_modules(part: str) -> None:
    assert set(IMPORTS[part]) <= PURE, dict(IMPORTS[part])


@pytest.mark.parametrize("part", sorted(FOUNDATIONS))
def test_foundations_import_nothing_of_visionwatch(part: str) -> None:
    assert not IMPORTS[part], dict(IMPORTS[part])


def test_api_and_web_are_siblings() -> None:
    assert "web" not in IMPORTS["api"], dict(IMPORTS["api"])
    assert "api" not in IMPORTS["web"], dict(IMPORTS["web"])
    for part in ("store", "http", "alerts", "db"):
        assert not {"api", "web"} & set(IMPORTS[part]), part


def test_the_check_sees_imports() -> None:
    """The checks above would pass on nothing: make sure they read real imports."""
    assert "store" in IMPORTS["api"]
    assert "http" in IMPORTS["web"]
    assert "db" in IMPORTS["store"]


def test_the_architecture_notes_place_every_part() -> None:
    """docs/architecture.md's table of layers names every part the checks above know."""
    notes = (SOURCE.parent.parent / "docs" / "architecture.md").read_text()
    table = notes.split("## Where things live", 1)[1].split("\n## ", 1)[0]
    parts = PURE | FOUNDATIONS | ALLOWED.keys() | {"app", "cli", "demo"}
    missing = {part for part in parts if f"`{part}`" not in table and f"`{part}/`" not in table}
    assert not missing, f"docs/architecture.md does not place {missing}"
