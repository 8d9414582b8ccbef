"""How the noisefs package is put together (issue 14), read from its source with ``ast``:
few reaches into another object's underscore attributes, small modules, imports that go one
way (no import inside a function to dodge a cycle: only lazy imports of heavy libraries,
each with its reason), every module importable in any order, and no class built from two
or more noisefs classes."""

from __future__ import annotations

import ast
import random
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import noisefs

PACKAGE = Path(noisefs.__file__).parent
MAX_REACHES = 15
MAX_LINES = 400
# a namedtuple's public API is underscored by design; os._exit is the documented exit of a
# forked child
NOT_PRIVATE = {"_replace", "_asdict", "_fields", "_make", "_exit"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@cache
def tree(name: str) -> ast.Module:
    return ast.parse(modules()[name].read_text())


def reaches() -> list[str]:
    """``file:line expression`` of every attribute read or written whose name starts with
    one underscore (not a dunder) on anything but ``self``/``cls``."""
    found = []
    for name, path in modules().items():
        for node in ast.walk(tree(name)):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            if node.attr.startswith("__") and node.attr.endswith("__"):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if node.attr not in NOT_PRIVATE:
                found.append(
                    f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {ast.unparse(node)}"
                )
    # a private name imported from another package (``from x import _y``) is a reach too
    for name, path in modules().items():
        for node in ast.walk(tree(name)):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    if private and not (node.module or "").startswith("noisefs"):
                        found.append(
                            f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {alias.name}"
                        )
    return found


def test_reaches_into_other_objects_underscore_attributes_are_few():
    found = reaches()
    assert len(found) <= MAX_REACHES, "\n".join(found)


def test_modules_are_small():
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}


# -- imports --------------------------------------------------------------------------------


def _targets(name: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The noisefs modules an import statement in module ``name`` executes: the module
    named (or each submodule a ``from`` names) and the packages above it that are not
    already initialised above the importer."""
    is_package = modules()[name].name == "__init__.py"
    named: list[str] = []
    if isinstance(node, ast.Import):
        named = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            here = name.split(".") if is_package else name.split(".")[:-1]
            here = here[: len(here) - (node.level - 1)]
            base = ".".join(here + ([base] if base else []))
        named = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules() else base
                 for alias in node.names]  # fmt: skip
    ancestors_of_importer = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
    out: set[str] = set()
    for target in named:
        if target not in modules():
            continue
        parts = target.split(".")
        packages = {".".join(parts[:i]) for i in range(2, len(parts))}
        out |= {target} | (packages - ancestors_of_importer)
    return out


def _under_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


@cache
def imports(name: str) -> tuple[frozenset[str], tuple[tuple[ast.stmt, frozenset[str]], ...]]:
    """(noisefs modules module ``name`` executes at import, (statement, its noisefs
    targets) of every import inside a function or method)."""
    top: set[str] = set()
    nested: list[tuple[ast.stmt, frozenset[str]]] = []

    def visit(body: list[ast.stmt], in_function: bool) -> None:
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                targets = _targets(name, node)
                if in_function:
                    nested.append((node, frozenset(targets)))
                else:
                    top.update(targets)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(node.body, True)
            elif isinstance(node, ast.If) and not in_function and _under_type_checking(node):
                continue
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    visit(getattr(node, field, None) or [], in_function)

    visit(tree(name).body, False)
    return frozenset(top), tuple(nested)


def reachable(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in imports(todo.pop())[0]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_top_level_imports_have_no_cycle():
    cycles = [name for name in modules() if name in reachable(name)]
    assert cycles == []


def _commented_lazy(lines: list[str], node: ast.stmt, import_lines: set[int]) -> bool:
    """Whether the import's own lines, the comments right above it (over the imports of
    its group) or the statement just above say ``lazy``."""
    if any("lazy" in lines[i] for i in range(node.lineno - 1, node.end_lineno)):
        return True
    i = node.lineno - 2
    while i >= 0:
        text = lines[i].strip()
        if "#" in text and "lazy" in text.split("#", 1)[1]:
            return True
        if not (text == "" or text.startswith("#") or i + 1 in import_lines):
            return False
        i -= 1
    return False


def test_no_import_inside_a_function_dodges_a_cycle():
    """An import inside a function is a lazy import of a heavy library (or of a noisefs
    module that loads one), and its comment says so; a noisefs module imported that way
    does not import the importer back, so it could stand at top level."""
    unexplained, cyclic = [], []
    for name, path in modules().items():
        lines = path.read_text().splitlines()
        nested = imports(name)[1]
        import_lines = {
            line for node, _ in nested for line in range(node.lineno, node.end_lineno + 1)
        }
        for node, targets in nested:
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
            if not _commented_lazy(lines, node, import_lines):
                unexplained.append(where)
            if any(name in reachable(t) | {t} for t in targets):
                cyclic.append(where)
    assert unexplained == []
    assert cyclic == []


def test_every_module_imports_in_any_order():
    """Fresh interpreters import every noisefs module, each in another random order: a
    cycle that only shows in some order (a partly initialised module) fails here."""
    names = [n for n in modules() if n != "noisefs.__main__"]
    for seed in (1, 2):
        order = names[:]
        random.Random(seed).shuffle(order)
        code = f"import importlib\nfor name in {order!r}:\n    importlib.import_module(name)\n"
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, (seed, done.stderr[-2000:])


# -- classes --------------------------------------------------------------------------------


def test_no_class_inherits_from_two_noisefs_classes():
    """No mixins. Exceptions are left out: an error may be two kinds at once, so that
    either ``except`` catches it (``CircuitTooLarge`` is a ``CircuitError``, with file and
    line, and a ``TooLargeError``); that is a type hierarchy with no shared state."""
    errors = {
        node.name for node in ast.walk(tree("noisefs.errors")) if isinstance(node, ast.ClassDef)
    }
    ours = {
        node.name
        for name in modules()
        for node in ast.walk(tree(name))
        if isinstance(node, ast.ClassDef) and node.name not in errors
    }
    mixed = []
    for name in modules():
        for node in ast.walk(tree(name)):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]
                if sum(base in ours for base in bases) >= 2:
                    mixed.append(f"{name}.{node.name}({', '.join(bases)})")
    assert mixed == []


# -- the arena's SQL --------------------------------------------------------------------------

# the ledger repository: the connection and transactions, and the statements on each table
LEDGER_MODULES = {
    "noisefs.arena.ledger",
    "noisefs.arena.ledger_snapshots",
    "noisefs.arena.ledger_owners",
}
SQL = re.compile(
    r"\b(SELECT\b.+\bFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
    r"PRAGMA\s+\w+|BEGIN(\s+IMMEDIATE)?\s*$|COMMIT\s*$|ROLLBACK\s*$|CREATE\s+(TABLE|INDEX)|"
    r"ALTER\s+TABLE)",
    re.DOTALL,
)


def _docstrings(module: ast.Module) -> set[int]:
    """ids of the docstring nodes of a module and of its classes and functions."""
    out = set()
    for node in ast.walk(module):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def _literal_text(node: ast.AST) -> str | None:
    """The text of a string literal; an f-string's literal parts joined by spaces."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return " ".join(
            v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
        )
    return None


def sql_outside_the_ledger() -> list[str]:
    """``file:line`` of every SQL statement outside the ledger modules: a call of
    ``execute``/``executemany``/``executescript`` with arguments (a cursor's, whatever its
    name) and a string literal that reads as SQL (docstrings aside)."""
    found = []
    for name, path in modules().items():
        if name in LEDGER_MODULES:
            continue
        module = tree(name)
        docs = _docstrings(module)
        inner = {  # an f-string's parts are walked as constants too: judge the whole only
            id(v)
            for node in ast.walk(module)
            if isinstance(node, ast.JoinedStr)
            for v in node.values
        }
        where = path.relative_to(PACKAGE.parent)
        for node in ast.walk(module):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("execute", "executemany", "executescript")
                and (node.args or node.keywords)
            ):
                found.append(f"{where}:{node.lineno} {ast.unparse(node.func)}(...)")
            if id(node) in docs or id(node) in inner:
                continue
            text = _literal_text(node)
            if text is not None and SQL.search(text):
                found.append(f"{where}:{node.lineno} {text[:60]!r}")
    return found


def test_no_sql_outside_the_ledger():
    """Every SQL statement of the arena is a named function of the ledger repository
    (``ledger``, ``ledger_snapshots``, ``ledger_owners``); the rest of noisefs calls those."""
    assert sql_outside_the_ledger() == []


def test_the_sql_check_finds_sql():
    """The check above is not blind: it finds the statements of the ledger modules."""
    found = []
    for name in LEDGER_MODULES:
        for node in ast.walk(tree(name)):
            text = _literal_text(node)
            if text is not None and SQL.search(text):
                found.append(text)
    assert len(found) >= 40
    assert any(t.startswith("SELECT") for t in found) and any("DELETE FROM" in t for t in found)
