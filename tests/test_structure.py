"""The package's shape: no import cycle between fcgpu's modules, no oversized source file,
every module saying its role in its first lines, no module using another's private names."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "fcgpu"
MAX_LINES = 500  # a module read in one sitting
SHIPPED_LAB_LINES = 2000  # fcgpu/testing: what users' own CI needs, not fcgpu's own test lab
TOP_LEVEL = 22  # one entry per Keras namespace and per fcgpu concept


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(name: str) -> set[str]:
    """fcgpu modules that ``name`` imports, at module level or inside functions (a lazy import can
    close a cycle too); ``if TYPE_CHECKING:`` blocks are skipped."""
    tree = ast.parse(MODULES[name].read_text())
    package = name if _is_package(name) else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in MODULES else source)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in MODULES and m != name}


def _cycle() -> list[str] | None:
    graph = {m: _imports(m) for m in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            # A package's __init__ re-exporting its own submodules is not a cycle: Python runs the
            # package first and the submodule imports only what it names.
            if n.startswith(m + ".") and _is_package(m):
                continue
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = dfs(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = dfs(m)
            if found:
                return found
    return None


def test_the_checker_sees_a_cycle(tmp_path, monkeypatch):
    """The check itself: two modules importing each other (one lazily) are reported."""
    pkg = tmp_path / "fcgpu"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""p"""\nfrom . import a\n')
    (pkg / "a.py").write_text('"""a"""\nfrom . import b\n')
    (pkg / "b.py").write_text('"""b"""\ndef f():\n    from .a import x\n')
    fake = {"fcgpu": pkg / "__init__.py", "fcgpu.a": pkg / "a.py", "fcgpu.b": pkg / "b.py"}
    monkeypatch.setitem(globals(), "MODULES", fake)
    assert _cycle() == ["fcgpu.a", "fcgpu.b", "fcgpu.a"]
    (pkg / "b.py").write_text('"""b"""\nimport numpy\n')
    assert _cycle() is None


def test_no_import_cycle_in_fcgpu():
    assert _cycle() is None, f"import cycle: {' -> '.join(_cycle())}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_module_is_small_and_says_its_role(name):
    source = MODULES[name].read_text()
    assert len(source.splitlines()) <= MAX_LINES, f"{name} has {len(source.splitlines())} lines"
    doc = ast.get_docstring(ast.parse(source))
    assert doc and len(doc.split()) >= 4, f"{name} does not say its role in a docstring"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_another_modules_private_names(name):
    """Within fcgpu (the compile gate reads CuPy's private code generator on purpose, pinned)."""
    tree = ast.parse(MODULES[name].read_text())
    private = [
        f"{node.module}.{a.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for a in node.names
        if a.name.startswith("_") and not a.name.startswith("__") and (node.level or (node.module or "").startswith("fcgpu"))
    ]
    assert not private, f"{name} imports private names {private}"


def test_the_shipped_test_support_is_small():
    lines = sum(len(p.read_text().splitlines()) for p in (ROOT / "testing").rglob("*.py"))
    assert lines <= SHIPPED_LAB_LINES, f"fcgpu/testing has {lines} lines"


def test_the_top_level_shows_the_concepts():
    entries = [p.name for p in ROOT.iterdir() if p.name not in ("__init__.py", "__main__.py", "__pycache__")]
    assert len(entries) <= TOP_LEVEL, sorted(entries)
