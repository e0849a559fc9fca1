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


# --- The house: an engine floor under two task wings (issue 50's rules) ---------------------------------------------

from fer_keras.tasks import APPLICATIONS, TASKS  # noqa: E402  (the layers' names; no TensorFlow)

WINGS = tuple(TASKS.names())  # one wing per task: fer_keras/<task>/
TOP = set(APPLICATIONS)  # they may use both wings (predict runs a detector and an expression model)


def layer(mod: str) -> str:
    """`top`, a wing's name, or `floor` (the engine under both wings: config, tasks, architectures, registry,
    run_dir, fitting, report, export, tflite, data/, models/, ...)."""
    parts = mod.split(".")
    if mod in TOP or parts[-1].startswith("cli_"):
        return "top"
    return parts[1] if len(parts) > 1 and parts[1] in WINGS else "floor"


def layer_breaks(graph: dict) -> list:
    """Imports that point the wrong way: the floor importing a wing or the top, a wing importing the other wing or
    the top. (module, imported module) for each, lazy imports included."""
    found = []
    for mod, edges in graph.items():
        here = layer(mod)
        for target in edges:
            there = layer(target)
            if there == "top" and here != "top" or here == "floor" and there in WINGS \
                    or here in WINGS and there in WINGS and there != here:
                found.append((mod, target))
    return sorted(found)


def test_the_floor_imports_no_wing_and_the_wings_not_each_other():
    graph, _ = import_graph()
    assert layer_breaks(graph) == []
    planted = {"fer_keras.config": {"fer_keras.detection.retinanet": []},
               "fer_keras.detection.x": {"fer_keras.expression.train": [], "fer_keras.run_dir": []},
               "fer_keras.expression.y": {"fer_keras.api": []}, "fer_keras.api": {"fer_keras.detection.faces": []}}
    assert layer_breaks(planted) == [("fer_keras.config", "fer_keras.detection.retinanet"),
                                     ("fer_keras.detection.x", "fer_keras.expression.train"),
                                     ("fer_keras.expression.y", "fer_keras.api")]


def registry_rows() -> tuple:
    """({task: {role: "module:function"}}, {architecture: {role: "module:function"}}) read from the registries."""
    from fer_keras.architectures import ARCHITECTURES
    from fer_keras.tasks import TASKS

    tasks = {n: {r: getattr(TASKS.get(n), r) for r in ("train", "evaluate", "figures", "export", "detector")
                 if getattr(TASKS.get(n), r)} for n in TASKS.names()}
    archs = {n: {r: getattr(ARCHITECTURES.get(n), r) for r in ("fit", "evaluate", "detector", "export")}
             for n in ARCHITECTURES.names()}
    return tasks, archs


def role_place_breaks(tasks: dict, archs: dict) -> list:
    """Roles outside their place: a task's run-life role not in `fer_keras.<task>.<role>` (its other roles: not in
    its wing), or an architecture whose roles are not all in one module."""
    found = []
    for task, roles in tasks.items():
        for role, ref in roles.items():
            module = ref.split(":")[0]
            want = f"fer_keras.{task}.{role}" if role in ("train", "evaluate", "figures", "export") else None
            if (want and module != want) or not module.startswith(f"fer_keras.{task}."):
                found.append(f"task {task}: {role} in {module}")
    for arch, roles in archs.items():
        modules = {ref.split(":")[0] for ref in roles.values()}
        if len(modules) != 1:
            found.append(f"architecture {arch}: roles in {', '.join(sorted(modules))}")
    return found


def test_every_role_lives_in_its_wing_module():
    assert role_place_breaks(*registry_rows()) == []
    planted_tasks = {"expression": {"train": "fer_keras.training:train", "evaluate": "fer_keras.expression.evaluate:e"},
                     "detection": {"detector": "fer_keras.predict:d"}}
    planted_archs = {"yunet": {"fit": "fer_keras.detection.yunet_run:fit", "export": "fer_keras.detection.export:x"}}
    assert role_place_breaks(planted_tasks, planted_archs) == [
        "task expression: train in fer_keras.training", "task detection: detector in fer_keras.predict",
        "architecture yunet: roles in fer_keras.detection.export, fer_keras.detection.yunet_run"]


def role_signature_breaks(refs: dict, texts: dict) -> list:
    """Roles whose first parameter is not `run: RunDir` (`train` and `fit` take `cfg: Config`). `refs`: {label:
    (role, "module:function")}; `texts`: {module: source}."""
    found = []
    for label, (role, ref) in refs.items():
        module, name = ref.split(":")
        fn = next((n for n in ast.parse(texts[module]).body
                   if isinstance(n, ast.FunctionDef) and n.name == name), None)
        want = ("cfg", "Config") if role in ("train", "fit") else ("run", "RunDir")
        first = fn.args.args[0] if fn is not None and fn.args.args else None
        got = (first.arg, ast.unparse(first.annotation) if first.annotation else None) if first else None
        if got != want:
            found.append(f"{label}: {name}({'' if got is None else f'{got[0]}: {got[1]}'}), want {want[0]}: {want[1]}")
    return found


def test_every_role_takes_the_run_first():
    tasks, archs = registry_rows()
    refs = {f"{kind} {n}.{r}": (r, ref) for kind, rows in (("task", tasks), ("architecture", archs))
            for n, roles in rows.items() for r, ref in roles.items()}
    assert role_signature_breaks(refs, module_texts()) == []
    planted = {"fer_keras.w.a": "def evaluate(run_dir: str, opts): ...\ndef fit(cfg: Config, run): ...\n"
                                "def export(run: RunDir, formats): ...\n"}
    refs = {"x": ("evaluate", "fer_keras.w.a:evaluate"), "y": ("fit", "fer_keras.w.a:fit"),
            "z": ("export", "fer_keras.w.a:export")}
    assert role_signature_breaks(refs, planted) == ["x: evaluate(run_dir: str), want run: RunDir"]


HEAVY = ("tensorflow", "keras", "keras_hub", "scipy", "ai_edge_litert", "tflite_runtime")


def heavy_modules(modules) -> dict:
    """{module: the heavy packages (`HEAVY`) importing it loads}, each measured in a fresh interpreter."""
    import subprocess
    import sys

    code = ("import importlib, sys; importlib.import_module(sys.argv[1]); "
            f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))")
    procs = {m: subprocess.Popen([sys.executable, "-c", code, m], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
             for m in sorted(modules)}
    return {m: [x for x in p.communicate()[0].strip().split(",") if x] for m, p in procs.items()}


def top_closure(graph: dict, mod: str) -> set:
    """The own modules importing `mod` loads: its top-level imports, and theirs."""
    seen, todo = set(), [mod]
    while todo:
        for target, uses in graph.get(todo.pop(), {}).items():
            if target not in seen and any(top for _, top in uses):
                seen.add(target)
                todo.append(target)
    return seen


def runnable_modules(texts: dict) -> set:
    """Modules run as `python -m` (they test `__name__ == "__main__"`)."""
    return {m for m, t in texts.items() if '__name__ == "__main__"' in t and not m.rpartition(".")[2].startswith("cli_")}


def lazy_import_breaks(graph: dict, heavy: dict, runnable: set = frozenset()) -> list:
    """Function-level imports between own modules whose target loads none of `HEAVY` (so could be at the top):
    "module:line imports target" for each. The package's `__init__` may defer a target that loads a module run as
    `python -m` (imported by the package first, runpy would warn that it runs a module already imported)."""
    found = []
    for mod, edges in sorted(graph.items()):
        for target, uses in sorted(edges.items()):
            if mod == "fer_keras" and ({target} | top_closure(graph, target)) & runnable:
                continue
            found += [f"{mod}:{line} imports {target}" for line, top in uses if not top and not heavy[target]]
    return found


def test_a_lazy_import_of_an_own_module_defers_a_heavy_package():
    """A function-level import between own modules is allowed only where importing the target loads TensorFlow,
    Keras, KerasHub, SciPy or LiteRT (measured: a fresh interpreter imports it), never to dodge a cycle."""
    graph, _ = import_graph()
    lazy_targets = {t for edges in graph.values() for t, uses in edges.items() if not all(top for _, top in uses)}
    assert lazy_import_breaks(graph, heavy_modules(lazy_targets), runnable_modules(module_texts())) == []
    planted = {"fer_keras.a": {"fer_keras.b": [(3, False)], "fer_keras.c": [(4, False), (1, True)]},
               "fer_keras": {"fer_keras.c": [(9, False)], "fer_keras.d": [(8, False)]},
               "fer_keras.d": {"fer_keras.e": [(1, True)]}}
    heavy = {"fer_keras.b": ["tensorflow"], "fer_keras.c": [], "fer_keras.d": []}
    assert lazy_import_breaks(planted, heavy, {"fer_keras.e"}) == \
        ["fer_keras:9 imports fer_keras.c", "fer_keras.a:4 imports fer_keras.c"]


def run_name_breaks(texts: dict) -> list:
    """Other names for a run than `run` (a RunDir) or `path` (its folder): parameters and variables called `rd`,
    `run_dir` or `run_path`. "module:line name" for each."""
    found = []
    for mod, text in texts.items():
        for node in ast.walk(ast.parse(text)):
            names = [(a.arg, a.lineno) for a in node.args.args + node.args.kwonlyargs] \
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) else \
                [(node.id, node.lineno)] if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) else []
            found += [f"{mod}:{line} {name}" for name, line in names if name in ("rd", "run_dir", "run_path")]
    return sorted(found)


def test_a_run_has_one_name():
    assert run_name_breaks(module_texts()) == []
    planted = {"fer_keras.x": "def f(run_dir: str, run):\n    rd = RunDir(run_dir)\n"}
    assert run_name_breaks(planted) == ["fer_keras.x:1 run_dir", "fer_keras.x:2 rd"]
