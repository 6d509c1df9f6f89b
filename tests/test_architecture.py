"""The package's structure, checked: no import loop between modules, every folder imports only from the
folders below it (docs/ARCHITECTURE.md draws the same layers), and the pure folders stay free of Lightning,
Hydra, OmegaConf and W&B."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "s2d"

# bottom to top: a folder may import from its own layer's folder and from lower layers only
LAYERS = [
    {"errors", "version", "compute", "seeds", "choices"},
    {"fingerprint", "io"},
    {"labelset"},
    {"data", "tracking", "models", "evaluation", "viz"},
    {"keymasks", "masks", "losses", "inference", "report"},
    {"lit"},
    {"config"},
    {"stages"},
    {"cli"},
]
FRAMEWORKS = ("lightning", "hydra", "omegaconf", "wandb", "torchmetrics")
# the edges where a framework is allowed: Lightning modules and data modules, the config, the stages, the CLI
FRAMEWORK_FILES = {"data/datamodules.py"}
FRAMEWORK_FOLDERS = {"lit", "config", "stages", "cli"}


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PKG.rglob("*.py"):
        mod = ".".join(("s2d", *f.relative_to(PKG).with_suffix("").parts))
        mods[mod.removesuffix(".__init__")] = f
    return mods


def _imports(f: Path, mods: dict[str, Path]) -> list[str]:
    """Every import in a file (top level and inside functions), resolved to s2d modules or to top-level names.
    ``from pkg import sub`` counts as importing pkg.sub, not pkg's __init__."""
    out = []
    for n in ast.walk(ast.parse(f.read_text())):
        if isinstance(n, ast.Import):
            out += [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            out += [f"{n.module}.{a.name}" if f"{n.module}.{a.name}" in mods else n.module for a in n.names]
    return out


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    g: dict[str, set[str]] = defaultdict(set)
    for mod, f in mods.items():
        for name in _imports(f, mods):
            if name.startswith("s2d"):
                target = _resolve(name, mods)
                if target and target not in (mod, "s2d"):
                    g[mod].add(target)
    return g


def _folder(mod: str) -> str:
    return mod.split(".")[1]


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for root in sorted(set(g) | {w for v in g.values() for w in v}):
        if root in index:
            continue
        work = [(root, iter(sorted(g.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(g.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_loop():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_loop_between_modules():
    assert _cycles(import_graph()) == []


def test_every_folder_imports_only_from_lower_layers():
    layer = {name: i for i, names in enumerate(LAYERS) for name in names}
    mods = _modules()
    assert {_folder(m) for m in mods if m != "s2d"} <= set(layer), "a new folder needs a layer in LAYERS"
    upward = sorted(f"{m} -> {t}" for m, ts in import_graph().items() for t in ts
                    if _folder(m) != _folder(t) and layer[_folder(t)] > layer[_folder(m)])
    same_layer = sorted(f"{m} -> {t}" for m, ts in import_graph().items() for t in ts
                        if _folder(m) != _folder(t) and layer[_folder(t)] == layer[_folder(m)])
    assert upward == [] and same_layer == []


def test_pure_folders_do_not_import_the_frameworks():
    mods = _modules()
    offenders = []
    for mod, f in mods.items():
        rel = f.relative_to(PKG).as_posix()
        if mod == "s2d" or _folder(mod) in FRAMEWORK_FOLDERS or rel in FRAMEWORK_FILES:
            continue
        used = {n.split(".")[0] for n in _imports(f, mods)} & set(FRAMEWORKS)
        if used:
            offenders.append(f"{rel}: {sorted(used)}")
    assert offenders == []
