"""The package's import graph, read from the source with ``ast``: no cycles, the bottom layer at the bottom, and
the search tool clear of training code.

Every import counts, at module level or inside a function (a lazy import still ties the two modules: each must be
read to change the other). ``from a.b import c`` depends on ``a.b`` and, when ``c`` is a submodule, on ``a.b.c``;
relative imports are resolved against their package.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def modules(root: Path, package: str = "claspkit") -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package) of every module under ``root/package``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def imports_of(name: str, path: Path, is_pkg: bool, known) -> set[str]:
    """The modules of ``known`` that module ``name`` imports, anywhere in its file."""
    package = name if is_pkg else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            if source in known:
                out.add(source)
            out.update(f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in known)
    out.discard(name)
    return out


def import_graph(root: Path = ROOT, package: str = "claspkit") -> dict[str, set[str]]:
    known = modules(root, package)
    return {name: imports_of(name, path, is_pkg, known) for name, (path, is_pkg) in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, modules and their imports in name order)."""
    state: dict[str, int] = {}            # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module ``start`` imports, directly or not: module -> the module that imports it on a shortest path."""
    seen, todo = {start: ""}, [start]
    while todo:
        node = todo.pop(0)
        for nxt in sorted(graph[node]):
            if nxt not in seen:
                seen[nxt] = node
                todo.append(nxt)
    return seen


def chain(via: dict[str, str], end: str) -> str:
    links = [end]
    while via[links[-1]]:
        links.append(via[links[-1]])
    return " -> ".join(reversed(links))


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle (counting imports inside functions): " + " -> ".join(cycle)


def test_the_search_tool_does_not_reach_training_code():
    """``claspkit index`` / ``search`` load checkpoints through model.checkpoint and embed through model.inference;
    whoever follows a checkpoint from search/ never has to read train.py."""
    graph = import_graph()
    for name in sorted(n for n in graph if n.startswith("claspkit.search")):
        via = reachable(graph, name)
        assert "claspkit.model.train" not in via, chain(via, "claspkit.model.train")


def test_the_bottom_layer_imports_only_the_bottom_layer():
    """config and constants know the valid choices as data: they import no registry and nothing above them."""
    graph = import_graph()
    bottom = {"claspkit.constants", "claspkit.errors", "claspkit.paths"}
    for name in ("claspkit.config", "claspkit.constants", "claspkit.errors", "claspkit.paths"):
        assert graph[name] <= bottom, f"{name} imports {sorted(graph[name] - bottom)}"


def test_the_checker_sees_cycles_through_lazy_relative_and_submodule_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "low.py").write_text("import os\n\n\ndef f():\n    from pkg.sub import high  # lazy, and a submodule\n")
    (pkg / "sub" / "high.py").write_text("from .. import low\n")                     # relative, a submodule
    (pkg / "sub" / "other.py").write_text("from ..low import f\nfrom pkg import sub\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.low"] == {"pkg.sub", "pkg.sub.high"} and graph["pkg.sub.high"] == {"pkg", "pkg.low"}
    assert graph["pkg.sub.other"] == {"pkg", "pkg.low", "pkg.sub"}
    assert find_cycle(graph) == ["pkg.low", "pkg.sub.high", "pkg.low"]
    (pkg / "sub" / "high.py").write_text("import os\n")
    assert find_cycle(import_graph(tmp_path, "pkg")) is None


def test_the_data_config_checks_matches_its_owners():
    """constants holds the choices config checks; their owners use the same values (the registry's names are
    compared in tests/encoders/test_backbones.py)."""
    from claspkit import constants
    from claspkit.data.asterisk import VOICES
    from claspkit.data.augment import codecs, noise, recipe
    from claspkit.evaluation import robustness

    assert tuple(VOICES) == constants.ASTERISK_LANGUAGES
    assert noise.NOISE_KINDS is robustness.NOISE_KINDS is constants.NOISE_KINDS
    assert noise.BABBLE_TALKERS == constants.BABBLE_TALKERS
    assert {k: v[2] for k, v in codecs.CODECS.items()} == constants.CODEC_KBPS
    assert recipe.STAGES == tuple(dict.fromkeys(c.stage for c in recipe.CHANNELS.values()))   # the chain's order
    assert {k: (c.stage, c.defaults, c.lists) for k, c in recipe.CHANNELS.items()} == constants.CHANNEL_PARAMS
    assert all(c.apply is not None for c in recipe.CHANNELS.values())
