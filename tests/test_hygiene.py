"""The checks README asks for before a commit, run by CI so they cannot be forgotten."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "snakemake", "--lint"],
        [sys.executable, "-m", "snakefmt", "--check", "."],
        [sys.executable, "-m", "ruff", "check", "."],
        [sys.executable, "-m", "ruff", "format", "--check", "."],
    ],
    ids=["snakemake-lint", "snakefmt", "ruff-check", "ruff-format"],
)
def test_clean(command):
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def test_library_never_imports_snakemake():
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "src" / "deepauc").rglob("*.py")
        if "import snakemake" in path.read_text() or "from snakemake" in path.read_text()
    ]
    assert not offenders


LIBRARY = REPO / "src" / "deepauc"


def _module_name(path: Path) -> str:
    parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _library_imports() -> dict[str, set[str]]:
    """Each library module and the library modules it imports (at any level of the file)."""
    modules = {_module_name(p): p for p in LIBRARY.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                candidates = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            found |= {c for c in candidates if c in modules and c != name}
        graph[name] = found
    return graph


def test_library_has_no_import_cycles():
    graph = _library_imports()
    state = {}

    def visit(module, trail):
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", " -> ".join([*trail, module])
        state[module] = "open"
        for imported in graph[module]:
            visit(imported, [*trail, module])
        state[module] = "done"

    for module in graph:
        visit(module, [])


#: The library's layers, lowest first: a module may import its own subpackage and the layers
#: below its own, never a layer above or a sibling of its own layer. The configuration sits
#: above the data and the methods because it builds their settings from the config's sections;
#: the image layer states what it needs (deepauc.data.images.Augmentation) instead.
LAYERS = [
    {"deepauc"},  # the package root: __init__, errors, atomic writes
    {"deepauc.methods", "deepauc.models"},
    {"deepauc.data"},
    {"deepauc.evaluation"},
    {"deepauc.config"},
    {"deepauc.training"},
    {"deepauc.deploy"},  # using trained models: export, new images, model card, saliency
    {"deepauc.jobs"},
    {"deepauc.cli"},  # the deepauc command: set-up before Snakemake
]
ROOT_MODULES_AT_MOST = 5


def _home(module: str) -> str:
    """The subpackage a module lives in (``deepauc`` for the root's modules)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and (LIBRARY / parts[1]).is_dir() else "deepauc"


def _layer(module: str) -> int:
    found = [rank for rank, layer in enumerate(LAYERS) if _home(module) in layer]
    assert found, f"{module}: in no layer of test_hygiene.LAYERS (add its subpackage there)"
    return found[0]


def test_no_library_layer_imports_a_higher_one_or_a_sibling():
    offenders = []
    for module, imported in _library_imports().items():
        for other in imported:
            same_package = _home(other) == _home(module)
            if not same_package and _layer(other) >= _layer(module):
                offenders.append(f"{module} -> {other}")
    assert not offenders, offenders


def test_the_package_root_holds_a_handful_of_modules():
    root = sorted(p.name for p in LIBRARY.glob("*.py"))
    assert len(root) <= ROOT_MODULES_AT_MOST, root


def test_no_library_module_is_long():
    lengths = {
        str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in LIBRARY.rglob("*.py")
    }
    assert max(lengths.values()) <= 400, sorted(lengths.items(), key=lambda kv: -kv[1])[:3]


def test_what_the_workflow_imports_while_parsing_needs_no_torch():
    """The Snakefile imports these on every invocation, dry runs included: torch and libauc
    would add seconds to each."""
    code = (
        "import sys; import deepauc.config.settings, deepauc.methods, deepauc.jobs.parallelism, "
        "deepauc.models.normalization; "
        "print(sorted(m for m in ('torch', 'libauc', 'timm') if m in sys.modules))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
