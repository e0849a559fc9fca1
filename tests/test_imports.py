"""The package's import graph (built from `ast`, nothing imported): no cycles, and every function-level import
between the package's own modules says why it is there (a comment on its line or the line above, e.g. deferring
TensorFlow), so the house keeps one direction."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "fer_keras")


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def _modules():
    for folder, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                yield os.path.join(folder, f)


def _resolve(name: str, modules: set) -> str:
    while name and name not in modules:  # `from fer_keras.x import y`: y may be a name in module x
        name = name.rpartition(".")[0]
    return name


def import_graph():
    """{module: {imported own module: [(line, top_level)]}} and each module's source lines."""
    paths = {_module_name(p): p for p in _modules()}
    modules = set(paths)
    graph, sources = {}, {}
    for mod, path in paths.items():
        with open(path, encoding="utf-8") as f:
            text = f.read()
        sources[mod] = text.splitlines()
        tree = ast.parse(text)
        top = {id(n) for n in tree.body}
        for parent in ast.walk(tree):  # imports under `if TYPE_CHECKING`/try at top level count as top level
            if isinstance(parent, (ast.If, ast.Try)) and id(parent) in top:
                top |= {id(n) for n in ast.walk(parent)}
        edges = graph.setdefault(mod, {})
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
            for n in names:
                if not n.startswith("fer_keras"):
                    continue
                target = _resolve(n, modules)
                if target and target != mod and target != "fer_keras":
                    edges.setdefault(target, []).append((node.lineno, id(node) in top))
    return graph, sources


def cycles(graph, top_level_only=False):
    """Every elementary cycle found by a DFS from each module (as module lists)."""
    adj = {m: {t for t, uses in e.items() if not top_level_only or any(top for _, top in uses)}
           for m, e in graph.items()}
    found, seen = [], set()

    def dfs(start, node, path, on_path):
        for nxt in sorted(adj.get(node, ())):
            if nxt == start:
                cyc = path[:]
                key = frozenset(cyc)
                if key not in seen:
                    seen.add(key)
                    found.append(cyc + [start])
            elif nxt not in on_path and nxt > start:
                on_path.add(nxt)
                dfs(start, nxt, path + [nxt], on_path)
                on_path.discard(nxt)

    for m in sorted(adj):
        dfs(m, m, [m], {m})
    return found


def test_the_package_has_no_import_cycle():
    graph, _ = import_graph()
    assert cycles(graph) == []


def test_function_level_imports_of_own_modules_say_why():
    graph, sources = import_graph()
    silent = []
    for mod, edges in graph.items():
        for target, uses in edges.items():
            for line, top in uses:
                if top:
                    continue
                here, above = sources[mod][line - 1], sources[mod][line - 2] if line > 1 else ""
                if "#" not in here and not above.strip().startswith("#"):
                    silent.append(f"{mod}:{line} imports {target}")
    assert silent == [], "\n".join(silent)


def module_texts() -> dict:
    """{module name: source text} of every module of the package."""
    texts = {}
    for path in _modules():
        with open(path, encoding="utf-8") as f:
            texts[_module_name(path)] = f.read()
    return texts


def private_imports(sources_by_module: dict) -> list:
    """`from fer_keras.x import _name` across modules: (module, line, name) for each."""
    found = []
    for mod, text in sources_by_module.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fer_keras") \
                    and node.module != mod:
                found += [(mod, node.lineno, a.name) for a in node.names if a.name.startswith("_")]
    return found


def test_no_module_imports_another_modules_private_names():
    """A leading underscore means "this module's own": importing it from another module is a hidden contract."""
    texts = module_texts()
    assert private_imports(texts) == []
    planted = {"fer_keras.a": "from fer_keras.b import _helper, public\nfrom fer_keras.a import _own\n"}
    assert private_imports(planted) == [("fer_keras.a", 1, "_helper")]  # the rule fails on a planted violation


def cli_rule_breaks(texts: dict) -> list:
    """Modules that break the command-line rule: argparse outside `cli_*.py`, or a package module (not a command)
    importing a `cli_*.py` module. (module, what) for each."""
    found = []
    for mod, text in texts.items():
        is_cli = mod.rpartition(".")[2].startswith("cli_")
        for node in ast.walk(ast.parse(text)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for n in names:
                if n == "argparse" and not is_cli:
                    found.append((mod, "imports argparse"))
                if n.startswith("fer_keras.") and n.rpartition(".")[2].startswith("cli_") and not is_cli:
                    found.append((mod, f"imports {n}"))
    return found


def test_argparse_lives_in_the_cli_modules_and_nothing_imports_them():
    """Commands are `cli_*.py` (parse, call the library, print); the library never imports a command."""
    texts = module_texts()
    assert cli_rule_breaks(texts) == []
    planted = {"fer_keras.data.x": "import argparse\nfrom fer_keras.cli_common import CliParser\n",
               "fer_keras.cli_x": "import argparse\nfrom fer_keras.cli_common import CliParser\n"}
    assert cli_rule_breaks(planted) == [("fer_keras.data.x", "imports argparse"),
                                        ("fer_keras.data.x", "imports fer_keras.cli_common")]
