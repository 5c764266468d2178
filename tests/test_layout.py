"""The dependency rule of the package (docs/architecture.md), checked on the source.

Layers, lowest first; a module may import its own layer or lower ones, never higher:
  0  metrics, files, runtime, weights.* (no model code)
  1  generators.*, extractors.*                   (siblings: neither imports the other)
  2  sampling, store, combine, fit.*, axes, editing, invert.*, plots
  3  discover, bench.*, train.*, serve.*, cli   (cli: flags from config dataclasses, error policy)
Every import counts, also one inside a function (no lazy import dodges the rule), and the
module-level imports form no cycle.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "tlgan_jax"
LAYERS = {
    0: ("metrics", "files", "runtime", "weights"),
    1: ("generators", "extractors"),
    2: ("sampling", "store", "combine", "fit", "axes", "editing", "invert", "plots"),
    3: ("discover", "bench", "train", "serve", "cli"),
}
SIBLINGS_APART = {("generators", "extractors"), ("extractors", "generators")}


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(ROOT.rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(["tlgan_jax", *parts])] = p
    return out


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(module: str) -> int:
    top = _top(module)
    for layer, names in LAYERS.items():
        if top in names:
            return layer
    raise AssertionError(f"{module}: not assigned to a layer in tests/test_layout.py")


def _imports(path: Path, module: str, modules: dict) -> list[tuple[str, bool]]:
    """(imported tlgan_jax module, at module level?) for every import in the file."""
    tree = ast.parse(path.read_text())
    top_level = {id(n) for n in tree.body}
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                     for a in node.names]
        else:
            continue
        for name in names:
            if name == "tlgan_jax" or not name.startswith("tlgan_jax."):
                continue
            while name not in modules:
                name = name.rsplit(".", 1)[0]
            found.append((name, id(node) in top_level))
    return found


MODULES = _modules()


@pytest.mark.parametrize("module", [m for m in MODULES if m != "tlgan_jax"])
def test_imports_follow_the_layers(module):
    for target, _ in _imports(MODULES[module], module, MODULES):
        if target == "tlgan_jax" or _top(target) == _top(module):
            continue
        assert _layer(target) <= _layer(module), \
            f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        assert (_top(module), _top(target)) not in SIBLINGS_APART, f"{module} imports {target}"


def test_no_import_cycles():
    graph = {m: {t for t, top in _imports(p, m, MODULES) if top and t != m}
             for m, p in MODULES.items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for t in graph.get(m, ()):
            # a package imports its own submodules; those importing the package back is a cycle
            if state.get(t) == 1:
                raise AssertionError(f"import cycle: {' -> '.join(stack + [m, t])}")
            if t not in state:
                visit(t, stack + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_the_rule_catches_an_upward_import(tmp_path):
    """The checker itself: an extractor importing the sampler is reported."""
    src = tmp_path / "bad.py"
    src.write_text("def f():\n    from tlgan_jax.sampling import sample\n")
    found = _imports(src, "tlgan_jax.extractors.bad", MODULES)
    assert found == [("tlgan_jax.sampling", False)]
    assert _layer("tlgan_jax.sampling") > _layer("tlgan_jax.extractors.bad")
