"""The boundaries the code keeps (docs/design.md, "Boundaries"), read from the imports."""

import ast
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PKG = REPO / "pipeline"
DATA = ["cases", "download", "http", "resample", "windows", "quality", "io", "errors", "channels", "report"]  # config: its geometry check loads the backbone module
MODEL = ["model", "train", "losses", "masking", "dataset", "preprocess", "embedding", "export", "evaluate", "tasks"]
SOURCE_NAMES = {"demo", "vitaldb", "local", "wfdb"}


def modules(sub=""):
    return sorted(p for p in (PKG / sub).glob("*.py"))


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def hits(names: set[str], *prefixes: str) -> set[str]:
    return {n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)}


def test_the_package_never_imports_snakemake():
    for path in PKG.rglob("*.py"):
        assert not hits(imports(path), "snakemake"), path


def test_data_modules_and_sources_never_import_torch():
    for path in [PKG / f"{m}.py" for m in DATA] + modules("sources"):
        assert not hits(imports(path), "torch", "tsfm_public", "transformers", "pipeline.backbones._base",
                        "pipeline.backbones.ttm", "pipeline.backbones.tspulse", "pipeline.model"), path


def test_data_stages_import_no_torch_at_run_time():
    """Transitively too: a data job never pays for importing torch."""
    code = ("import sys, pipeline.cases, pipeline.download, pipeline.resample, pipeline.windows, pipeline.report\n"
            "import pipeline.sources.demo, pipeline.sources.vitaldb, pipeline.sources.local, pipeline.sources.wfdb\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tsfm_public', 'transformers'))\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]


def test_model_and_training_never_import_sources_or_vitaldb():
    for path in [PKG / f"{m}.py" for m in MODEL] + modules("backbones"):
        assert not hits(imports(path), "pipeline.sources", "vitaldb", "wfdb", "pipeline.download", "pipeline.http"), path


def test_model_and_training_load_no_source_at_run_time():
    """Transitively too (evaluation reads the case table without loading a source)."""
    code = ("import sys, pipeline.train, pipeline.export, pipeline.evaluate, pipeline.backbones.ttm, pipeline.backbones.tspulse\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('vitaldb', 'wfdb') or m.startswith('pipeline.sources'))\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]


def test_only_backbone_modules_import_granite_tsfm_models():
    for path in PKG.rglob("*.py"):
        if path.parent.name == "backbones" and path.name not in ("__init__.py", "base.py"):
            continue
        assert not hits(imports(path), "tsfm_public"), path


def test_the_resampler_does_not_import_the_downloader():
    assert not hits(imports(PKG / "resample.py"), "pipeline.download", "pipeline.http")


def test_nothing_outside_sources_branches_on_a_source_name():
    """No comparison (==, !=, in) with a source name outside pipeline/sources/, in Python or in the rules."""
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
    assert {"pipeline.sources", "pipeline.backbones"} <= set(project["tool"]["setuptools"]["packages"])


def test_registries_find_every_module():
    """A new source or backbone is one module: the registries list the package's modules."""
    from pipeline.backbones import BACKBONES
    from pipeline.sources import SOURCES

    assert set(SOURCES) == {"demo", "vitaldb", "local", "wfdb"}
    assert set(BACKBONES) == {"ttm", "tspulse"}


def test_tasks_name_real_channels():
    from pipeline.channels import CHANNELS
    from pipeline.tasks import TASKS

    assert len({t.name for t in TASKS}) == len(TASKS)
    for t in TASKS:
        assert set(t.inputs) <= set(CHANNELS) and t.kind in ("regression", "classification") and t.level in ("window", "subject")
