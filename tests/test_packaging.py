"""Installing fusiongraph puts one top-level package in site-packages: fusiongraph (nodes, store, ... inside)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_has_one_top_level_package_with_its_data(tmp_path):
    src = tmp_path / "src"  # a copy: setuptools writes build/ and *.egg-info into the tree it builds
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "*.egg-info", "__pycache__", ".hypothesis", "bench-out", "tests"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("fusiongraph-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"fusiongraph", wheel.name.split("-py3")[0] + ".dist-info"}
    for path in (
        "fusiongraph/graphs/fusion.py",
        "fusiongraph/nodes/cascade.py",
        "fusiongraph/store/models.yaml",
        "fusiongraph/store/taxonomy.yaml",
        "fusiongraph/prompts/judge.md",
        "fusiongraph/server/openai_app.py",
        "fusiongraph/strategies/hybrid.py",
        "fusiongraph/model_kinds/local.py",
    ):
        assert path in names, path
