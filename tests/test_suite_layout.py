"""How the suite is laid out: tests import helpers from tests/support/, never from conftest.py,
which holds only fixtures and pytest's hooks.

Read from the sources (not by importing), so an import inside a function counts too.
"""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CONFTEST = TESTS / "conftest.py"


def imports_conftest(source: str) -> bool:
    """Whether `source` imports the tests' conftest, in any spelling."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        else:
            continue
        if any(name.split(".")[-1] == "conftest" for name in names):
            return True
    return False


def helpers_in(source: str) -> list[str]:
    """What a module defines besides fixtures, pytest's hooks and constants: functions,
    classes, type aliases, anything computed."""
    found = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if not node.name.startswith("pytest_") and not any(
                map(is_fixture, node.decorator_list)
            ):
                found.append(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            if not is_literal(node.value):
                found.append(ast.unparse(node))
        elif not isinstance(node, ast.Import | ast.ImportFrom | ast.Expr):
            found.append(ast.unparse(node).splitlines()[0])
    return found


def is_fixture(decorator: ast.expr) -> bool:
    called = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(called, ast.Attribute) and called.attr == "fixture"


def is_literal(value: ast.expr | None) -> bool:
    if value is None:
        return False
    try:
        ast.literal_eval(value)
    except (ValueError, TypeError):
        return False
    return True


def test_no_module_of_the_suite_imports_conftest() -> None:
    importing = [
        str(path.relative_to(TESTS))
        for path in sorted(TESTS.rglob("*.py"))
        if path != CONFTEST and imports_conftest(path.read_text())
    ]
    assert not importing, f"import from tests/support/ instead, in {importing}"


def test_conftest_holds_only_fixtures_and_hooks() -> None:
    helpers = helpers_in(CONFTEST.read_text())
    assert not helpers, f"move these to a module of tests/support/: {helpers}"


def test_the_checks_see_what_they_look_for() -> None:
    """The checks above would pass on nothing: make sure they see what they look for."""
    for spelling in (
        "from tests.conftest import auth",
        "import tests.conftest",
        "from tests import conftest",
        "from .conftest import auth",
        "from conftest import auth",
        "def f():\n    from tests.conftest import auth",
    ):
        assert imports_conftest(spelling), spelling
    assert not imports_conftest("from tests.support.workspaces import auth")
    conftest = """
import pytest
DATABASES = ("sqlite", "postgresql")
NewKey = Callable[..., str]
_names = itertools.count()
def pytest_addoption(parser): pass
@pytest.fixture
def database(): pass
@pytest.fixture(scope="session")
def server(): pass
def auth(secret): pass
class Clock: pass
"""
    assert helpers_in(conftest) == [
        "NewKey = Callable[..., str]",
        "_names = itertools.count()",
        "auth",
        "class Clock:",
    ]
