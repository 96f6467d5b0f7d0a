"""No import cycles in `newsletter`, counting imports made inside functions.

A cycle hidden in a function (module A imports B at the top, B imports A
when a function runs) works until someone moves the import, then fails at
start-up with a half-initialised module; it also means neither module can be
understood, or tested, without the other. The graph is read from the source
with `ast`, so it sees every import the code can run, whether or not a test
happens to run it:

- `import a.b` and `from a.b import c` import `a.b`, and `c` too when `c` is
  a submodule; importing a module also runs its parent packages'
  `__init__`, so `x.y` importing `a.b` imports `a` too (but a module's own
  parent packages have already started before it does: `a.b.c` importing
  its sibling `a.b.d` does not import `a.b` again, unless it names `a.b`
  itself, as in `from a.b import name`);
- imports at module level and inside functions and classes count;
- imports under `if TYPE_CHECKING:` do not: they never run, they exist
  for the type checker only.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import newsletter

PACKAGE = Path(newsletter.__file__).parent
ROOT = PACKAGE.name


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under `node`, leaving out the body of `if TYPE_CHECKING:`."""
    yield from _imports_in(ast.iter_child_nodes(node))


def _imports_in(nodes: Iterable[ast.AST]) -> Iterator[ast.Import | ast.ImportFrom]:
    for child in nodes:
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            yield from _imports_in(child.orelse)
        else:
            yield from _imports(child)


def _absolute(module: str, is_package: bool, statement: ast.ImportFrom) -> str:
    if statement.level == 0:
        return statement.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (statement.level - 1)]
    return ".".join([*base, statement.module] if statement.module else base)


def imported_by(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `newsletter` that importing `module` (or calling its functions) imports."""
    targets: set[str] = set()
    for statement in _imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(statement, ast.Import):
            targets.update(alias.name for alias in statement.names)
        else:
            source = _absolute(module, path.name == "__init__.py", statement)
            targets.add(source)
            targets.update(f"{source}.{alias.name}" for alias in statement.names)
    own_parents = set(_parents(module))
    implied = {parent for target in targets for parent in _parents(target)} - own_parents
    return {name for name in targets | implied if name in known and name != module}


def _parents(module: str) -> list[str]:
    """The packages whose `__init__` runs before `module`: `a`, `a.b` for `a.b.c`."""
    parts = module.split(".")
    return [".".join(parts[:depth]) for depth in range(1, len(parts))]


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imported_by(name, path, known) for name, path in found.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, iterative)."""
    state: dict[str, str] = {}
    for start in sorted(graph):
        if start in state:
            continue
        path: list[str] = [start]
        pending: list[Iterator[str]] = [iter(sorted(graph[start]))]
        state[start] = "open"
        while pending:
            following = next(pending[-1], None)
            if following is None:
                state[path.pop()] = "done"
                pending.pop()
            elif state.get(following) == "open":
                return [*path[path.index(following) :], following]
            elif following not in state:
                state[following] = "open"
                path.append(following)
                pending.append(iter(sorted(graph[following])))
    return None


def test_the_package_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_a_cycle_through_a_function_level_import_is_found() -> None:
    """The detector itself: a cycle that only a function's import closes is still a cycle."""
    first = ast.parse("from newsletter.b import thing\n")
    second = ast.parse("def later():\n    from newsletter.a import other\n")
    graph = {
        "newsletter.a": {i.module for i in _imports(first) if isinstance(i, ast.ImportFrom)},
        "newsletter.b": {i.module for i in _imports(second) if isinstance(i, ast.ImportFrom)},
    }
    assert find_cycle({k: {m for m in v if m} for k, v in graph.items()}) == [
        "newsletter.a",
        "newsletter.b",
        "newsletter.a",
    ]


def test_imports_for_the_type_checker_only_do_not_count() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from newsletter.a import A\n"
        "else:\n    from newsletter.c import C\n"
    )
    assert sorted(str(getattr(i, "module", "")) for i in _imports(tree)) == [
        "newsletter.c",
        "typing",
    ]


def test_a_submodule_named_in_from_import_and_its_parent_packages_count(tmp_path: Path) -> None:
    package = tmp_path / "newsletter"
    (package / "sub").mkdir(parents=True)
    path = package / "user.py"
    path.write_text("def f():\n    from newsletter.sub import leaf\n", encoding="utf-8")
    known = {"newsletter", "newsletter.sub", "newsletter.sub.leaf", "newsletter.user"}
    # `newsletter` itself ran before `newsletter.user` did: not an import of it.
    assert imported_by("newsletter.user", path, known) == {"newsletter.sub", "newsletter.sub.leaf"}


def test_importing_a_name_from_the_own_package_counts(tmp_path: Path) -> None:
    """`from a.b import name` in `a.b.c` needs `a.b` to have run: a cycle if `a.b` imports `a.b.c`."""
    path = tmp_path / "lookup.py"
    path.write_text("from newsletter.sub import NAMES\nfrom newsletter.sub.leaf import x\n")
    known = {"newsletter", "newsletter.sub", "newsletter.sub.leaf", "newsletter.sub.lookup"}
    assert imported_by("newsletter.sub.lookup", path, known) == {
        "newsletter.sub",
        "newsletter.sub.leaf",
    }
