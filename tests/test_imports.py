"""The package imports without cycles: every module imports in a fresh interpreter whatever was
imported before it, and the graph of module-level imports between cnnkit's modules is acyclic, so no
import works only because of the order in which some other module happened to run.

The graph is read from the source with ``ast``: the imports a module runs when it is imported (its
body, class bodies and module-level ``if``/``try`` included; function bodies not). An import of a
cnnkit module inside a function is allowed only where ALLOWED_IN_FUNCTIONS says why."""

import ast
import importlib.util
import pathlib
import pkgutil
import subprocess
import sys

import pytest

# the folder of the package's .py files (an editable install lists the compiled modules' folder first)
ROOT = pathlib.Path(importlib.util.find_spec("cnnkit").origin).parent

# Modules that may import cnnkit modules inside functions, and why.
ALLOWED_IN_FUNCTIONS = {
    "cnnkit.__main__": "each command imports what it needs (python -m cnnkit --version loads no kernels)",
    "cnnkit.demo": "the demo is a script run by python -m cnnkit demo",
    "cnnkit.ops._backend": "the native modules load on first use (_core under OMP_WAIT_POLICY=PASSIVE, _cuda "
                           "only for GPU arrays)",
    "cnnkit.profiler": "imports cnnkit.ops when a profile starts (no cycle holds it there: it could move up)",
}
OPTIONAL = {"cnnkit._cuda"}  # built only where nvcc was found, and loads only with a CUDA driver


def _modules(path=ROOT, prefix="cnnkit."):
    """Every module and package of cnnkit, found on disk without importing anything."""
    names = []
    for info in pkgutil.iter_modules([str(path)], prefix):
        names.append(info.name)
        if info.ispkg:
            names += _modules(path / info.name.rsplit(".", 1)[1], info.name + ".")
    return names


MODULES = ["cnnkit"] + sorted(_modules())


def _source(module):
    """The .py file of a module or package, None for a compiled module."""
    parts = module.split(".")[1:]
    package = ROOT.joinpath(*parts, "__init__.py")
    plain = ROOT.joinpath(*parts[:-1], parts[-1] + ".py") if parts else package
    return package if package.exists() else plain if plain.exists() else None


def _imports(tree, skip_functions=True):
    """The Import/ImportFrom nodes of tree, not looking into function bodies when skip_functions."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif skip_functions and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        stack.extend(ast.iter_child_nodes(node))


def _targets(module, node):
    """The cnnkit modules an import statement in module runs, and the packages above them that it
    initializes on the way (not the importer's own packages: those are initialized before it)."""
    is_package = _source(module) is not None and _source(module).name == "__init__.py"
    package = module if is_package else module.rsplit(".", 1)[0]
    if isinstance(node, ast.Import):
        named = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
        # from P import x: the submodule P.x when there is one, else a name defined by P itself
        named = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    out = set()
    for target in named:
        if not target.startswith("cnnkit"):
            continue
        out.add(target)
        parts = target.split(".")
        for i in range(2, len(parts)):
            above = ".".join(parts[:i])
            if not module.startswith(above + "."):
                out.add(above)
    return out


def _graph():
    graph = {}
    for module in MODULES:
        path = _source(module)
        if path is not None:
            tree = ast.parse(path.read_text(), str(path))
            graph[module] = sorted({t for node in _imports(tree) for t in _targets(module, node)} - {module})
    return graph


def _cycle(graph):
    """One cycle of graph as a list of modules, or None."""
    state, path = {}, []

    def visit(m):
        state[m] = "open"
        path.append(m)
        for t in graph.get(m, ()):
            if state.get(t) == "open":
                return path[path.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        state[m] = "done"
        path.pop()
        return None

    for m in graph:
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_module_level_imports_form_no_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_sees_a_cycle():
    assert _cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert _cycle({"a": ["b", "c"], "b": ["c"], "c": []}) is None
    # what the package looked like: saving took __version__ from the package that imports models
    tree = ast.parse("from .. import __version__, _zipnpy\nfrom .model import Model\n")
    targets = {t for node in _imports(tree) for t in _targets("cnnkit.models.saving", node)}
    assert targets == {"cnnkit", "cnnkit._zipnpy", "cnnkit.models.model"}


def test_cnnkit_modules_are_imported_inside_functions_only_where_allowed():
    found = []
    for module in MODULES:
        path = _source(module)
        if path is None or module in ALLOWED_IN_FUNCTIONS:
            continue
        tree = ast.parse(path.read_text(), str(path))
        at_top = set(_imports(tree))
        for node in _imports(tree, skip_functions=False):
            if node not in at_top and _targets(module, node):
                found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}")
    assert not found, f"imports of cnnkit modules inside functions (import them at the top): {found}"


def test_every_module_imports_in_any_order(rng):
    """Several random orders, each in a fresh interpreter: a module that imports only after some
    other one has run first fails here."""
    importable = [m for m in MODULES if m not in OPTIONAL]
    for _ in range(4):
        order = [importable[i] for i in rng.permutation(len(importable))]
        script = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
        proc = subprocess.run([sys.executable, "-c", script, *order], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"importing in the order {order} failed:\n{proc.stderr[-3000:]}"


@pytest.mark.parametrize("module", sorted(ALLOWED_IN_FUNCTIONS))
def test_allowed_list_names_real_modules(module):
    assert module in MODULES
