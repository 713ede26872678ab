"""The boundaries the code keeps (docs/design.md, "File layout" and "Boundaries"), read from the
imports: every import of every module, at any depth (imports inside functions count too)."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PKG = REPO / "pipeline"
STAGES = ("data", "model", "evaluation")
SHARED = {"__init__", "__main__", "config", "io", "errors", "channels", "plots"}  # the top level
SOURCE_NAMES = {"demo", "vitaldb", "local", "wfdb"}
TORCH = ("torch", "tsfm_public", "transformers")


def module_name(path: Path, root: Path = PKG) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(root: Path = PKG) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def imports(path: Path, root: Path = PKG) -> set[str]:
    """Every name a file imports, at any depth: `import a.b` gives a.b; `from a import b` gives a
    and a.b (b may be a module or a name in a); relative imports are resolved (package `root`)."""
    out = set()
    name = module_name(path, root) if root in path.parents else ""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def hits(names: set[str], *prefixes: str) -> set[str]:
    return {n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)}


def import_graph(root: Path = PKG) -> dict[str, set[str]]:
    """Module -> the package's modules it makes Python load: each imported module (a name imported
    from a module counts as that module) and the packages above it, whose __init__ runs first. A
    module's own packages count only where it imports them by name (they are loaded before it, so
    only an explicit import of one can close a cycle, e.g. a package that imports a submodule that
    imports the package)."""
    mods = package_modules(root)
    graph = {}
    for mod, path in mods.items():
        explicit, implied = set(), set()
        for name in imports(path, root):
            while name and name not in mods:
                name = name.rpartition(".")[0]
            explicit.add(name)
            while name := name.rpartition(".")[0]:
                implied.add(name)
        # `from pkg import sub` names pkg only on the way to sub: pkg is implied, not imported by name
        explicit = {n for n in explicit if not any(o.startswith(n + ".") for o in explicit)}
        graph[mod] = (explicit | (implied - set(_parents(mod)))) - {mod, ""}
    return graph


def _parents(mod: str) -> list[str]:
    parts = mod.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, colours)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def stage_of(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in STAGES) else "top"


def stage_imports(stage: str) -> dict[str, set[str]]:
    return {m: imports(p) for m, p in package_modules().items() if stage_of(m) == stage}


# ----------------------------------------------------------------------------- the layout
def test_the_top_level_holds_only_the_shared_modules_and_the_stages():
    top = {p.stem for p in PKG.glob("*.py")}
    assert top == SHARED, f"move {sorted(top - SHARED)} into a stage folder (docs/design.md, 'File layout')"
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(STAGES)


def test_every_stage_says_what_it_owns_and_may_import():
    for stage in STAGES:
        doc = ast.get_docstring(ast.parse((PKG / stage / "__init__.py").read_text()))
        assert doc and "import" in doc and len(doc) > 200, stage
        for path in (PKG / stage).glob("*.py"):  # every module it owns is named in its docstring
            if path.stem != "__init__":
                assert f"`{path.stem}`" in doc, (stage, path.stem)


def test_the_packages_list_every_folder():
    """A non-editable install ships every package of the layout (pyproject.toml lists them)."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    assert listed == {module_name(p.parent / "__init__.py") for p in PKG.rglob("__init__.py")}


# ----------------------------------------------------------------------------- no cycle
def test_no_import_cycle_counting_imports_inside_functions():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle_hidden_inside_a_function(tmp_path):
    """The test above can fail: a package whose modules import each other, one of them inside a
    function (as config -> ablations -> config did), is reported."""
    root = tmp_path / "pipeline"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("")
    (root / "a.py").write_text("from pipeline.sub.b import f\n")
    (root / "sub" / "b.py").write_text("def f():\n    from pipeline import a\n")
    (root / "c.py").write_text("from . import a\n")
    assert import_graph(root)["pipeline.c"] == {"pipeline.a"}
    cycle = find_cycle(import_graph(root))
    assert cycle is not None and cycle[0] == cycle[-1] and {"pipeline.a", "pipeline.sub.b"} <= set(cycle)
    (root / "sub" / "b.py").write_text("def f():\n    return 1\n")
    assert find_cycle(import_graph(root)) is None
    (root / "sub" / "__init__.py").write_text("from pipeline.sub import b\n")  # a package importing its child,
    (root / "sub" / "b.py").write_text("from pipeline.sub import x\n")  # which imports the package
    assert find_cycle(import_graph(root)) in (["pipeline.sub", "pipeline.sub.b", "pipeline.sub"],
                                              ["pipeline.sub.b", "pipeline.sub", "pipeline.sub.b"])


# ----------------------------------------------------------------------------- the folders' rules
def test_shared_modules_import_no_stage():
    for mod, names in stage_imports("top").items():
        if mod != "pipeline.__main__":
            assert not hits(names, *(f"pipeline.{s}" for s in STAGES)), mod


def test_data_never_imports_model_evaluation_or_torch():
    for mod, names in stage_imports("data").items():
        assert not hits(names, "pipeline.model", "pipeline.evaluation", *TORCH), mod


def test_model_never_imports_data_or_evaluation():
    for mod, names in stage_imports("model").items():
        assert not hits(names, "pipeline.data", "pipeline.evaluation", "vitaldb", "wfdb"), mod


def test_nothing_imports_the_command_line():
    for path in [*PKG.rglob("*.py"), *(REPO / "workflow").rglob("*.smk"), REPO / "workflow" / "Snakefile"]:
        assert not hits(imports(path) if path.suffix == ".py" else set(re.findall(r"(?:from|import) (\S+)", path.read_text())),
                        "pipeline.__main__"), path


def test_the_boundary_rules_catch_a_stage_importing_upward(tmp_path):
    """The folder rules can fail: a data module that imports the model stage (inside a function)
    is one of the names `hits` finds."""
    path = tmp_path / "bad.py"
    path.write_text("def f():\n    from pipeline.model.train import pretrain\n    import torch\n")
    assert hits(imports(path), "pipeline.model", *TORCH) == {"pipeline.model.train", "pipeline.model.train.pretrain", "torch"}


def _loaded_after(code: str) -> list[str]:
    r = subprocess.run([sys.executable, "-c", code + "\nimport json; print(json.dumps(sorted(sys.modules)))"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.splitlines()[-1])


def test_a_data_job_loads_no_torch_and_no_other_stage():
    """Transitively too: every data module, and the command line, never load torch, the model or
    the evaluation stage (a data job never pays for them)."""
    data = sorted(m for m in package_modules() if stage_of(m) == "data")
    loaded = _loaded_after("import sys, pipeline.__main__\n" + "\n".join(f"import {m}" for m in data))
    assert not [m for m in loaded if m.split(".")[0] in TORCH or hits({m}, "pipeline.model", "pipeline.evaluation")]


def test_a_model_job_loads_no_source_and_no_data_code():
    model = sorted(m for m in package_modules() if stage_of(m) == "model")
    loaded = _loaded_after("import sys\n" + "\n".join(f"import {m}" for m in model))
    assert not [m for m in loaded if m.split(".")[0] in ("vitaldb", "wfdb") or hits({m}, "pipeline.data", "pipeline.evaluation")]


# ----------------------------------------------------------------------------- other boundaries
def test_the_package_never_imports_snakemake():
    for path in PKG.rglob("*.py"):
        assert not hits(imports(path), "snakemake"), path


def test_only_backbone_modules_import_granite_tsfm_models():
    for path in PKG.rglob("*.py"):
        if path.parent.name == "backbones" and path.name != "__init__.py":
            continue
        assert not hits(imports(path), "tsfm_public"), path


def test_the_resampler_does_not_import_the_downloader():
    assert not hits(imports(PKG / "data" / "resample.py"), "pipeline.data.download", "pipeline.data.http")


def test_nothing_outside_sources_branches_on_a_source_name():
    """No comparison (==, !=, in) with a source name outside pipeline/data/sources/, in Python or in the rules."""
    for path in PKG.rglob("*.py"):
        if path.parent.name == "sources":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                consts = [c.value for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
                assert not SOURCE_NAMES & set(consts), f"{path}:{node.lineno} compares with a source name"
    for smk in (REPO / "workflow").rglob("*.smk"):
        assert not re.search(r"""(==|!=|\bin)\s*["'](demo|vitaldb|local|wfdb)["']""", smk.read_text()), smk


def test_rules_have_no_run_blocks_and_no_hard_coded_case_files():
    for smk in [REPO / "workflow" / "Snakefile", *(REPO / "workflow" / "rules").glob("*.smk")]:
        text = smk.read_text()
        assert not re.search(r"^\s+run:", text, re.M), smk
        assert ".vital" not in text, smk


def test_errors_live_apart_from_the_stages():
    assert "class CaseError" in (PKG / "errors.py").read_text()
    for path in PKG.rglob("*.py"):
        if path.name != "errors.py":
            assert "class CaseError" not in path.read_text(), path


def test_schema_ships_inside_the_package():
    """A non-editable install carries the schema (package data), not a path into the repository."""
    import tomllib

    from pipeline.config import SCHEMA_PATH

    assert SCHEMA_PATH.parent == PKG and SCHEMA_PATH.is_file()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert SCHEMA_PATH.name in project["tool"]["setuptools"]["package-data"]["pipeline"]


def test_registries_find_every_module():
    """A new source or backbone is one module: the registries list the package's modules."""
    from pipeline.data.sources import SOURCES
    from pipeline.model.backbones import BACKBONES

    assert set(SOURCES) == {"demo", "vitaldb", "local", "wfdb"}
    assert set(BACKBONES) == {"ttm", "tspulse"}


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_hands_in_its_own_config_checks(stage):
    """Each stage's rules live in its checks module and read only sections; the whole config's list
    holds every stage's once."""
    import importlib

    from pipeline.evaluation.checks import ALL_CHECKS, STAGE_CHECKS

    checks = importlib.import_module(f"pipeline.{stage}.checks").CHECKS
    assert checks and all(rule.__module__ == f"pipeline.{stage}.checks" for _, rule in checks)
    assert all(c in STAGE_CHECKS for c in checks) and len(ALL_CHECKS) == len(STAGE_CHECKS) + 1


def test_tasks_name_real_channels():
    from pipeline.channels import CHANNELS
    from pipeline.evaluation.tasks import TASKS

    assert len({t.name for t in TASKS}) == len(TASKS)
    for t in TASKS:
        assert set(t.inputs) <= set(CHANNELS) and t.kind in ("regression", "classification") and t.level in ("window", "subject")
