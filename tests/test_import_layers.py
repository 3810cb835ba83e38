"""featsr_d2's imports go one way and form no cycle.

Every module of the package is parsed (not imported) and every import of featsr_d2 in it is
collected: at module level and inside functions, absolute and relative, ``import a.b`` and
``from a import b`` (an edge to the submodule ``a.b`` when ``b`` is one), and
``importlib.import_module("featsr_d2...")`` with a literal name. Each module belongs to a layer,
lowest first:

    utils -> core -> config, mmdet -> data, modeling -> checkpoint -> evaluation -> engine
    (-> tools)

A module may import its own layer and the layers below it; the layers of one rank (``config`` and
``mmdet``; ``data`` and ``modeling``) never import each other. ``mmdet`` is the MMDetection
integration: it builds on the core alone, beside the Detectron2 integration (everything from
``config`` up), which never imports it. ``utils`` (helpers that import nothing of featsr_d2) sits at
the bottom, below ``core``, whose ops use them (the MATLAB resize rounds with
:func:`featsr_d2.utils.image.round_to_uint8`); the core sits below everything that knows a
framework, starting with the Detectron2 config (whose validation reads the core's table of
supervision modes).
``featsr_d2/__init__.py`` sits above them all (it imports the subpackages so that importing the
package registers everything), and nothing inside the package imports it. Besides, the module
graph has no cycle: a function-local import that dodges one is still one.

The core (``featsr_d2.core``) belongs to no framework: no module of it, nor any module of featsr_d2
it imports (directly or through others, with the packages Python runs to import them), imports
``detectron2``, ``mmdet``, ``mmcv`` or ``mmengine``, at module level or in a function. The package's
``__init__`` imports the Detectron2 integration only where Detectron2 is installed;
``tests/core/test_framework_free.py`` imports the core with Detectron2 and MMDetection blocked.

The MMDetection integration (``featsr_d2.mmdet``) works where Detectron2 is not installed: nothing
it runs imports ``detectron2``, nor any module of featsr_d2's Detectron2 side (``config``,
``data``, ``modeling``, ``checkpoint``, ``evaluation``, ``engine``: they import it);
``tests/mmdet/test_featsr_framework_free.py`` trains its FeatSR model with Detectron2 blocked.
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "featsr_d2"

# The layers, lowest first; the layers of one tuple share a rank and never import each other.
ORDER: tuple[tuple[str, ...], ...] = (
    ("utils",),
    ("core",),
    ("config", "mmdet"),
    ("data", "modeling"),
    ("checkpoint",),
    ("evaluation",),
    ("engine",),
)
# featsr_d2.<name> -> its layer, for the top-level modules that are not a layer's package: the
# config layer's three modules (they import nothing of featsr_d2 but the core).
LAYER_OF = {
    "config": "config",
    "config_files": "config",
    "config_validation": "config",
}
EXTENSIONS = {f"{PACKAGE}._C": "core"}  # compiled modules: no source to parse
ROOT = "the package's __init__"  # featsr_d2 itself: above every layer
RANK = {name: rank for rank, names in enumerate(ORDER) for name in names}
RANK[ROOT] = len(ORDER)

# Edges (importer, imported) that remain only until another part of issue 13 lands, each with its
# reason. Keep it empty: the lead empties it when that part is merged.
PENDING: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Edge:
    importer: str  # module name, e.g. "featsr_d2.core.degradations"
    imported: str
    path: str  # the importer's file, relative to the repository
    line: int

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    """``root/featsr_d2/data/x.py`` -> ``featsr_d2.data.x``; a package's __init__ -> the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_sources(
    root: pathlib.Path = REPO, package: str = PACKAGE
) -> dict[str, tuple[str, str]]:
    """Every module of ``package`` under ``root``: name -> (path relative to root, source)."""
    return {
        module_name(p, root): (str(p.relative_to(root)), p.read_text(encoding="utf-8"))
        for p in sorted((root / package).rglob("*.py"))
    }


def collect_edges(
    sources: Mapping[str, tuple[str, str]], package: str = PACKAGE, extensions: Iterable[str] = ()
) -> list[Edge]:
    """Every import of ``package`` in ``sources`` (name -> (path, source)), module level and in
    functions, as edges between module names."""
    known = set(sources) | set(extensions)
    edges = []
    for importer, (path, source) in sources.items():
        is_package = pathlib.PurePath(path).name == "__init__.py"
        here = importer.split(".") if is_package else importer.split(".")[:-1]

        def add(target: str, line: int, importer=importer, path=path) -> None:
            if target == package or target.startswith(package + "."):
                edges.append(Edge(importer, target, path, line))

        for node in ast.walk(ast.parse(source, filename=path)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the importer's package, level - 1 levels up
                    base_parts = here[: len(here) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    add(sub if sub in known else base, node.lineno)
            elif isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in ("import_module", "__import__") and node.args:
                    arg = node.args[0]
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        add(arg.value, node.lineno)
    return list(dict.fromkeys(edges))  # one edge per line, however many names it imports


def layer_of(
    module: str, package: str = PACKAGE, extensions: Mapping[str, str] = EXTENSIONS
) -> str:
    """The layer of a module name: its subpackage under ``package`` (or :data:`LAYER_OF`)."""
    if module == package:
        return ROOT
    if module in extensions:
        return extensions[module]
    top = module.split(".")[1]
    layer = LAYER_OF.get(top, top)
    if layer not in RANK:
        raise KeyError(
            f"{module} belongs to no layer: put it under a layer's package, or name its layer in "
            "tests/test_import_layers.py LAYER_OF"
        )
    return layer


def layer_violations(
    edges: Iterable[Edge], package: str = PACKAGE, pending: Mapping = PENDING
) -> list[str]:
    """One message per edge against the layer order."""
    problems = []
    for e in edges:
        if (e.importer, e.imported) in pending:
            continue
        a, b = layer_of(e.importer, package), layer_of(e.imported, package)
        if a == b:
            continue
        if b == ROOT:
            why = "nothing inside the package imports featsr_d2's __init__"
        elif RANK[b] > RANK[a]:
            why = f"{a} sits below {b}"
        elif RANK[b] == RANK[a]:
            why = f"{a} and {b} never import each other"
        else:
            continue
        problems.append(f"{e.where()}: {a} -> {b} ({e.importer} imports {e.imported}): {why}")
    return problems


def find_cycles(edges: Iterable[Edge], pending: Mapping = PENDING) -> list[list[Edge]]:
    """The import cycles: for every strongly connected component of more than one module (or a
    module importing itself), one cycle through it as its edges."""
    graph: dict[str, dict[str, Edge]] = {}
    for e in edges:
        if (e.importer, e.imported) in pending:
            continue
        graph.setdefault(e.importer, {}).setdefault(e.imported, e)
        graph.setdefault(e.imported, {})

    # Tarjan's strongly connected components, iteratively.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])

    cycles = []
    for component in components:
        members = set(component)
        first = min(component)
        if len(component) == 1 and first not in graph[first]:
            continue
        # A shortest path back to `first` inside the component (breadth-first).
        parent: dict[str, Edge] = {}
        frontier, seen, closing = [first], {first}, None
        while frontier and closing is None:
            following = []
            for node in frontier:
                for child, edge in sorted(graph[node].items()):
                    if child == first:
                        closing = edge
                        break
                    if child in members and child not in seen:
                        seen.add(child)
                        parent[child] = edge
                        following.append(child)
                if closing is not None:
                    break
            frontier = following
        path = [closing]
        while path[0].importer != first:
            path.insert(0, parent[path[0].importer])
        cycles.append(path)
    return cycles


def format_cycle(cycle: list[Edge]) -> str:
    return (
        "cycle "
        + " -> ".join([cycle[0].importer] + [e.imported for e in cycle])
        + "\n"
        + ("\n".join(f"    {e.where()}: {e.importer} imports {e.imported}" for e in cycle))
    )


# The framework-free core, and the frameworks it must not import (top-level package names).
CORE = f"{PACKAGE}.core"
FRAMEWORKS = ("detectron2", "mmdet", "mmcv", "mmengine")


@dataclass(frozen=True)
class ExternalImport:
    importer: str
    name: str  # the imported module, e.g. "detectron2.layers"
    path: str
    line: int


def collect_external_imports(
    sources: Mapping[str, tuple[str, str]], package: str = PACKAGE
) -> list[ExternalImport]:
    """Every absolute import of a module outside ``package`` in ``sources``, module level and in
    functions: ``import a.b``, ``from a.b import c`` and ``importlib.import_module("a.b")``."""
    found = []
    for importer, (path, source) in sources.items():
        for node in ast.walk(ast.parse(source, filename=path)):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            elif isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in ("import_module", "__import__") and node.args:
                    arg = node.args[0]
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        names = [arg.value]
            for name in names:
                if name.split(".")[0] != package:
                    found.append(ExternalImport(importer, name, path, node.lineno))
    return found


def core_closure(
    edges: Iterable[Edge], modules: Iterable[str], core: str = CORE, package: str = PACKAGE
) -> dict[str, list[str]]:
    """Every module the core runs when it is imported: the core's modules, the modules of the
    package they import (directly or through others) and the packages above each (Python runs
    their ``__init__`` first), but the package's own ``__init__``. Module -> a chain from a core
    module to it."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.importer, set()).add(e.imported)
    chains = {m: [m] for m in sorted(modules) if m == core or m.startswith(core + ".")}
    frontier = list(chains)
    while frontier:
        module = frontier.pop(0)
        parts = module.split(".")
        parents = {".".join(parts[:k]) for k in range(2, len(parts))}
        for target in sorted(graph.get(module, set()) | parents):
            if target != package and target not in chains:
                chains[target] = chains[module] + [target]
                frontier.append(target)
    return chains


def framework_violations(
    sources: Mapping[str, tuple[str, str]],
    edges: Iterable[Edge],
    core: str = CORE,
    package: str = PACKAGE,
    frameworks: Iterable[str] = FRAMEWORKS,
    name: str = "the core",
) -> list[str]:
    """One message per import of a framework by a module the core runs (:func:`core_closure`);
    ``core`` may name another subpackage (``name`` in the messages)."""
    chains = core_closure(edges, sources, core, package)
    frameworks = set(frameworks)
    problems = []
    for imp in collect_external_imports(sources, package):
        if imp.importer in chains and imp.name.split(".")[0] in frameworks:
            chain = chains[imp.importer]
            why = f"part of {name}" if len(chain) == 1 else f"run by {name}: " + " -> ".join(chain)
            problems.append(
                f"{imp.path}:{imp.line}: {imp.importer} imports {imp.name} ({why}); {name} "
                f"imports none of {', '.join(sorted(frameworks))}"
            )
    return problems


# The MMDetection integration, and what it must not run: Detectron2 and featsr_d2's Detectron2 side.
MMDET = f"{PACKAGE}.mmdet"
MMDET_MAY_RUN = ("utils", "core", "mmdet")


def mmdet_violations(
    sources: Mapping[str, tuple[str, str]],
    edges: Iterable[Edge],
    package: str = PACKAGE,
    extensions: Mapping[str, str] = EXTENSIONS,
) -> list[str]:
    """One message per import of ``detectron2`` by a module ``<package>.mmdet`` runs, and per
    module of the Detectron2 side it runs (directly or through others), with its chain."""
    root = f"{package}.mmdet"
    problems = framework_violations(
        sources, edges, root, package, frameworks=("detectron2",), name=root
    )
    for module, chain in sorted(core_closure(edges, sources, root, package).items()):
        if layer_of(module, package, extensions) not in MMDET_MAY_RUN:
            problems.append(
                f"{module} is run by {root}: {' -> '.join(chain)}; {root} runs only "
                f"{', '.join(MMDET_MAY_RUN)} (the Detectron2 side imports detectron2)"
            )
    return problems


# ------------------------------------------------------------------------------------------------
# The package


@pytest.fixture(scope="module")
def edges():
    return collect_edges(package_sources(), extensions=EXTENSIONS)


def test_every_module_has_a_layer():
    for module in package_sources():
        layer_of(module)  # raises for a module outside every layer


def test_imports_go_one_way(edges):
    problems = layer_violations(edges)
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


def test_no_import_cycle(edges):
    cycles = find_cycles(edges)
    assert not cycles, "import cycles:\n" + "\n".join(format_cycle(c) for c in cycles)


def test_the_walk_sees_the_package(edges):
    """The collected edges include ones known to exist, of every kind the walk must see."""
    pairs = {(e.importer, e.imported) for e in edges}
    assert ("featsr_d2", "featsr_d2.modeling") in pairs  # from featsr_d2 import modeling
    assert ("featsr_d2.core.layers.compiled", "featsr_d2._C") in pairs  # in a function
    assert ("featsr_d2.core.degradations", "featsr_d2.core.layers.imresize") in pairs
    assert ("featsr_d2.core.layers.imresize", "featsr_d2.utils.image") in pairs  # utils below
    assert ("featsr_d2.engine.setup", "featsr_d2.config") in pairs
    assert not PENDING or all(isinstance(why, str) and why for why in PENDING.values())


def test_the_core_imports_no_framework(edges):
    problems = framework_violations(package_sources(), edges)
    assert not problems, "framework imports in the core:\n" + "\n".join(problems)


def test_the_core_holds_each_framework_free_concept(edges):
    """The concepts both integrations share live in the core, and the core runs what it needs of
    the package (the image helpers, the compiled ops) but nothing of the Detectron2 side."""
    modules = package_sources()
    concepts = [f"{CORE}.{m}" for m in (
        "featsr.sr_feature_generator", "featsr.sr_feature_discriminator",
        "featsr.featsr_box_branch", "featsr.small_proposals", "featsr.extractor_layers",
        "featsr.supervision", "featsr.half_resolution", "sr.network", "sr.dbpn", "sr.cajnn",
        "sr.rrdbnet", "sr.bicubic", "sr.deblock", "sr.self_ensemble", "sr.losses", "degradations",
        "layers.roi_align", "layers.dilated_conv_maxpool", "layers.imresize", "layers.compiled",
        "receptive_field", "mobilenet_v2_weights", "tt100k", "tt100k_categories",
        "tt100k_protocol", "tt100k_report", "image_files",
    )]  # fmt: skip
    assert [c for c in concepts if c not in modules] == []
    closure = core_closure(edges, modules)
    assert {f"{PACKAGE}.utils.image", f"{PACKAGE}.utils", f"{PACKAGE}._C"} <= set(closure)
    outside = sorted(m for m in closure if not m.startswith(CORE) and m != f"{PACKAGE}._C")
    assert all(m.startswith(f"{PACKAGE}.utils") for m in outside), outside
    # The Detectron2 side imports detectron2 (what the walk must see).
    externals = collect_external_imports(modules)
    assert any(
        i.importer == f"{PACKAGE}.config" and i.name == "detectron2.config" for i in externals
    )


def test_the_mmdet_integration_imports_no_detectron2(edges):
    """featsr_d2.mmdet, and every module of featsr_d2 it runs, works where Detectron2 is not
    installed (tests/mmdet/test_featsr_framework_free.py and test_mmdet_framework_free.py run it
    with Detectron2 blocked)."""
    modules = package_sources()
    assert MMDET in modules and f"{MMDET}.featsr_rcnn" in modules
    problems = mmdet_violations(modules, edges)
    assert not problems, "featsr_d2.mmdet runs the Detectron2 side:\n" + "\n".join(problems)
    # What the rule must see: the integration runs the core, and imports mmdet itself.
    closure = core_closure(edges, modules, core=MMDET)
    assert f"{CORE}.featsr.sr_feature_generator" in closure
    externals = collect_external_imports(modules)
    assert any(i.importer.startswith(MMDET) and i.name.startswith("mmdet") for i in externals)


# ------------------------------------------------------------------------------------------------
# The checker itself, on a tiny synthetic package


SYNTHETIC = {
    "pkg": ("pkg/__init__.py", "from pkg import data, modeling\n"),
    "pkg.config": ("pkg/config.py", "import re\n"),
    "pkg.data": ("pkg/data/__init__.py", ""),
    "pkg.data.mapper": (
        "pkg/data/mapper.py",
        "from pkg.config import x\n"
        "from ..core import resize\n"  # relative, two levels: pkg.core.resize
        "def f():\n"
        "    from pkg.modeling.net import Net\n",  # function-local, sideways
    ),
    "pkg.core": ("pkg/core/__init__.py", "from . import resize\n"),
    "pkg.core.resize": ("pkg/core/resize.py", "import pkg.engine.hooks\n"),  # upward
    "pkg.modeling": ("pkg/modeling/__init__.py", ""),
    "pkg.modeling.net": (
        "pkg/modeling/net.py",
        "from pkg.modeling import head\nimport importlib\nimportlib.import_module('pkg.config')\n",
    ),
    "pkg.modeling.head": ("pkg/modeling/head.py", "def g():\n    from .net import Net\n"),
    "pkg.engine": ("pkg/engine/__init__.py", ""),
    "pkg.engine.hooks": ("pkg/engine/hooks.py", "from pkg import config\nfrom pkg import X\n"),
}


def test_checker_finds_upward_sideways_and_root_edges_and_cycles():
    edges = collect_edges(SYNTHETIC, package="pkg")
    pairs = {(e.importer, e.imported, e.line) for e in edges}
    assert ("pkg.data.mapper", "pkg.core.resize", 2) in pairs  # relative
    assert ("pkg.data.mapper", "pkg.modeling.net", 4) in pairs  # function-local
    assert ("pkg.core", "pkg.core.resize", 1) in pairs  # from . import <submodule>
    assert ("pkg.modeling.net", "pkg.config", 3) in pairs  # importlib.import_module
    assert ("pkg.modeling.head", "pkg.modeling.net", 2) in pairs  # relative, in a function
    assert ("pkg.engine.hooks", "pkg.config", 1) in pairs and (
        "pkg.engine.hooks",
        "pkg",
        2,
    ) in pairs

    assert layer_of("pkg.core.resize", "pkg") == "core" and layer_of("pkg", "pkg") == ROOT
    problems = layer_violations(edges, "pkg", pending={})
    assert len(problems) == 3, problems
    assert any(
        p.startswith("pkg/core/resize.py:1: core -> engine") and "core sits below engine" in p
        for p in problems
    )
    assert any(
        p.startswith("pkg/data/mapper.py:4: data -> modeling") and "never import each other" in p
        for p in problems
    )
    assert any(p.startswith("pkg/engine/hooks.py:2: engine -> ") for p in problems)  # the root

    cycles = find_cycles(edges, pending={})
    assert len(cycles) == 1
    (cycle,) = cycles
    assert {e.importer for e in cycle} == {"pkg.modeling.head", "pkg.modeling.net"}
    assert cycle[0].importer == cycle[-1].imported
    assert all(a.imported == b.importer for a, b in zip(cycle, cycle[1:]))
    assert "pkg/modeling/head.py:2" in format_cycle(cycle)

    # A pending edge is left out of both checks, and only it.
    pending = {("pkg.core.resize", "pkg.engine.hooks"): "waits for a move"}
    assert len(layer_violations(edges, "pkg", pending=pending)) == 2
    assert not find_cycles(edges, pending={("pkg.modeling.head", "pkg.modeling.net"): "why"})


def test_checker_rejects_a_module_outside_every_layer():
    with pytest.raises(KeyError, match="belongs to no layer"):
        layer_of(f"{PACKAGE}.miscellany.helpers")


SYNTHETIC_CORE = {
    "pkg": ("pkg/__init__.py", "import importlib.util\nfrom pkg import modeling\n"),
    "pkg.core": ("pkg/core/__init__.py", ""),
    "pkg.core.ok": (
        "pkg/core/ok.py",
        "import torch\nimport detectron2_backport\nfrom ..utils import helpers\n"  # not a framework
        "from pkg.data.clean import y\n",  # its package's __init__ runs too
    ),
    "pkg.core.bad": ("pkg/core/bad.py", "import os\nfrom detectron2.layers import ShapeSpec\n"),
    "pkg.core.lazy": (
        "pkg/core/lazy.py",
        "import importlib\ndef f():\n    return importlib.import_module('mmengine.registry')\n",
    ),
    "pkg.core.sub": ("pkg/core/sub/__init__.py", "import mmdet\n"),
    "pkg.core.sub.x": ("pkg/core/sub/x.py", ""),
    "pkg.utils": ("pkg/utils/__init__.py", ""),
    "pkg.utils.helpers": ("pkg/utils/helpers.py", "def g():\n    from mmcv import ops\n"),
    "pkg.data": ("pkg/data/__init__.py", "from pkg.data import builtin\n"),
    "pkg.data.builtin": ("pkg/data/builtin.py", "import detectron2.data\n"),
    "pkg.data.clean": ("pkg/data/clean.py", "y = 1\n"),
    "pkg.modeling": ("pkg/modeling/__init__.py", "import detectron2\nimport mmdet.models\n"),
}


def test_checker_finds_framework_imports_the_core_runs():
    """Module level, in a function and by importlib; in the core, in a module it imports (through
    a relative import) and in the package __init__ Python runs to import one; not a mere prefix
    (detectron2_backport), not outside the core (pkg.modeling), not the package's __init__."""
    edges = collect_edges(SYNTHETIC_CORE, package="pkg")
    externals = collect_external_imports(SYNTHETIC_CORE, package="pkg")
    assert ExternalImport("pkg.core.lazy", "mmengine.registry", "pkg/core/lazy.py", 3) in externals
    assert ExternalImport("pkg.utils.helpers", "mmcv", "pkg/utils/helpers.py", 2) in externals
    closure = core_closure(edges, SYNTHETIC_CORE, core="pkg.core", package="pkg")
    # pkg.data runs as the package of pkg.data.clean, and imports pkg.data.builtin
    chain = ["pkg.core.ok", "pkg.data.clean", "pkg.data", "pkg.data.builtin"]
    assert closure["pkg.data.builtin"] == chain
    assert "pkg.modeling" not in closure and "pkg" not in closure
    problems = framework_violations(SYNTHETIC_CORE, edges, core="pkg.core", package="pkg")
    assert len(problems) == 5, problems
    expected = [
        ("pkg/core/bad.py:2: pkg.core.bad imports detectron2.layers (part of the core)"),
        ("pkg/core/lazy.py:3: pkg.core.lazy imports mmengine.registry (part of the core)"),
        ("pkg/core/sub/__init__.py:1: pkg.core.sub imports mmdet (part of the core)"),
        ("pkg/utils/helpers.py:2: pkg.utils.helpers imports mmcv (run by the core: pkg.core.ok "
         "-> pkg.utils.helpers)"),
        ("pkg/data/builtin.py:1: pkg.data.builtin imports detectron2.data (run by the core: "
         "pkg.core.ok -> pkg.data.clean -> pkg.data -> pkg.data.builtin)"),
    ]  # fmt: skip
    for message in expected:
        assert any(p.startswith(message) for p in problems), (message, problems)


SYNTHETIC_MMDET = {
    "pkg": ("pkg/__init__.py", "from pkg import modeling\n"),
    "pkg.core": ("pkg/core/__init__.py", ""),
    "pkg.core.g": ("pkg/core/g.py", "import torch\n"),
    "pkg.core.uses_mmdet": ("pkg/core/uses_mmdet.py", "import mmdet\n"),  # the core's rule
    "pkg.utils": ("pkg/utils/__init__.py", ""),
    "pkg.utils.io": ("pkg/utils/io.py", "def f():\n    import detectron2.utils.file_io\n"),
    "pkg.config": ("pkg/config.py", "from detectron2.config import CfgNode\n"),
    "pkg.modeling": ("pkg/modeling/__init__.py", "import detectron2\n"),
    "pkg.modeling.mask": ("pkg/modeling/mask.py", ""),
    "pkg.mmdet": ("pkg/mmdet/__init__.py", "from pkg.mmdet import head, rcnn, ok\n"),
    "pkg.mmdet.ok": (
        "pkg/mmdet/ok.py",
        "import mmdet.models\nfrom mmengine.registry import MODELS\nfrom ..core import g\n"
        "import pkg.core.uses_mmdet\n",  # mmdet's own stack: allowed here
    ),
    "pkg.mmdet.head": (
        "pkg/mmdet/head.py",
        "import importlib\ndef f():\n    return importlib.import_module('detectron2.structures')\n",
    ),
    "pkg.mmdet.rcnn": (
        "pkg/mmdet/rcnn.py",
        "from pkg.utils import io\ndef g():\n    from pkg.config import x\n"
        "from pkg.modeling.mask import m\n",
    ),
}


def test_checker_finds_what_the_mmdet_integration_must_not_run():
    """Detectron2 imported by importlib in a function, through a utils module it runs, and by the
    Detectron2-side modules it runs (the config, function-locally; modeling's package __init__ as
    the parent of a module it imports); not mmdet, mmcv or mmengine, not the core's own rule."""
    edges = collect_edges(SYNTHETIC_MMDET, package="pkg")
    problems = mmdet_violations(SYNTHETIC_MMDET, edges, package="pkg", extensions={})
    expected = [
        "pkg/mmdet/head.py:3: pkg.mmdet.head imports detectron2.structures (part of pkg.mmdet)",
        ("pkg/utils/io.py:2: pkg.utils.io imports detectron2.utils.file_io (run by pkg.mmdet: "
         "pkg.mmdet.rcnn -> pkg.utils.io)"),
        ("pkg/config.py:1: pkg.config imports detectron2.config (run by pkg.mmdet: pkg.mmdet.rcnn "
         "-> pkg.config)"),
        "pkg/modeling/__init__.py:1: pkg.modeling imports detectron2 (run by pkg.mmdet",
        "pkg.config is run by pkg.mmdet: pkg.mmdet.rcnn -> pkg.config",
        "pkg.modeling is run by pkg.mmdet: pkg.mmdet.rcnn -> pkg.modeling.mask -> pkg.modeling",
        "pkg.modeling.mask is run by pkg.mmdet: pkg.mmdet.rcnn -> pkg.modeling.mask",
    ]  # fmt: skip
    for message in expected:
        assert any(p.startswith(message) for p in problems), (message, problems)
    assert len(problems) == len(expected), problems
    assert not any("mmengine" in p or "uses_mmdet" in p for p in problems)
    # The layer rule sees the direct imports too: mmdet and config share a rank.
    layer_problems = layer_violations(edges, "pkg", pending={})
    assert any("pkg/mmdet/rcnn.py:3: mmdet -> config" in p and "never import each other" in p
               for p in layer_problems)  # fmt: skip
    assert any("pkg/mmdet/rcnn.py:4: mmdet -> modeling" in p for p in layer_problems)
