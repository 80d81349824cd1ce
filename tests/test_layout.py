"""The architecture's rules, checked: which package may import which, no import loops, small
modules and a training loop made of short methods. docs/ARCHITECTURE.md states these rules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "cli", "tui")
MAX_LINES = 400
MAX_TRAINING_METHOD = 60


def python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def modules() -> dict[str, Path]:
    """Every module of the three packages by dotted name (a package by its ``__init__``)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(path: Path, known: dict[str, Path], external: bool = False) -> set[str]:
    """The project modules ``path`` imports, at the top or inside functions alike (an import
    tucked into a function to get round a loop is still a loop); type-checking-only imports,
    which never run, are left out. ``external``: the top-level names of the other packages it
    imports instead."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    names = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:  # `from engine.store import checkpoint` imports a module
                full = f"{node.module}.{alias.name}"
                names.add(full if full in known else node.module)
    if external:
        return {name.split(".")[0] for name in names} - {name.split(".")[0] for name in known}
    return {name for name in names if name in known}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_in_a_loop():
    assert cycles(graph()) == []


def test_the_loop_check_finds_a_loop():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_the_cli_imports_the_tui_and_the_engine_imports_no_face():
    offending = []
    for module, targets in graph().items():
        package = module.split(".")[0]
        for target in targets:
            face = target.split(".")[0]
            if package == "engine" and face != "engine" or package == "tui" and face == "cli":
                offending.append(f"{module} -> {target}")
    assert offending == []


LAYERS = ("engine", "engine.data", "engine.store", "engine.train", "engine.use")  # each imports only those before it


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(".".join(parts[:2])) if len(parts) > 2 else 0


def test_each_engine_layer_imports_only_the_layers_beneath_it():
    upward = [f"{module} -> {target}" for module, targets in graph().items() if module.startswith("engine")
              for target in targets if target.startswith("engine") and layer(target) > layer(module)]
    assert upward == []


FACE_LIBRARIES = {"typer", "click", "rich", "textual", "textual_plotext", "plotext"}


def test_the_engine_imports_no_front_end_library():
    known = modules()
    offending = {name: sorted(found) for name, path in known.items() if name.startswith("engine")
                 if (found := imports(path, known, external=True) & FACE_LIBRARIES)}
    assert offending == {}


def test_import_engine_loads_no_front_end():
    # scikit-learn itself imports rich, so only the faces and the libraries nothing else loads are checked
    names = [name for name in modules() if name.startswith("engine")]
    out = python(
        "import sys\n"
        "import engine\n"
        "print(sorted(m for m in ('typer', 'rich', 'textual', 'torch') if m in sys.modules))\n"
        + "".join(f"import {name}\n" for name in names)
        + "from engine import RunConfig, start\n"
        "RunConfig.for_task('iris')\n"
        "print(sorted(m for m in ('typer', 'textual', 'cli', 'tui') if m in sys.modules))"
    )
    assert out.split() == ["[]", "[]"]


def test_the_tui_imports_the_engine_but_not_the_cli():
    names = [name for name in modules() if name.startswith("tui")]
    out = python("import sys\n" + "".join(f"import {name}\n" for name in names)
                 + "print(sorted(m for m in ('cli', 'typer') if m in sys.modules))")
    assert out.strip() == "[]"


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"]])
def test_help_does_not_import_torch(argv):
    out = python(
        "import sys\n"
        f"sys.argv = ['torchdeck', *{argv!r}]\n"
        "from cli.main import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "print('TORCH', 'torch' in sys.modules)"
    )
    assert "Usage: torchdeck" in out and out.strip().endswith("TORCH False")
    if argv[0] == "train":
        assert "--resume" in out


def test_python_dash_m_cli_is_the_torchdeck_command():
    done = subprocess.run([sys.executable, "-m", "cli", "list", "optimizers"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "adam" in done.stdout


def test_no_module_is_longer_than_the_limit():
    long = {str(path.relative_to(ROOT)): count for path in modules().values()
            if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_training_is_made_of_short_methods():
    long = {}
    for path in sorted((ROOT / "engine" / "train").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_TRAINING_METHOD:
                    long[f"{path.name}:{node.name}"] = length
    assert long == {}
