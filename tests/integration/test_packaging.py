"""Installing fusiongraph puts one top-level package in site-packages: fusiongraph (nodes, store, ... inside)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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
        "fusiongraph/defaults/models.yaml",
        "fusiongraph/defaults/taxonomy.yaml",
        "fusiongraph/judging/kinds/consistency.py",
        "fusiongraph/eval/bench/replay.py",
        "fusiongraph/prompts/judge.md",
        "fusiongraph/prompts/answer_steps.md",
        "fusiongraph/defaults/acceptance_labels.jsonl",
        "fusiongraph/models/gguf_parts.py",
        "fusiongraph/server/openai_app.py",
        "fusiongraph/routing/strategies/hybrid.py",
        "fusiongraph/models/kinds/local.py",
    ):
        assert path in names, path


def test_langgraph_dockerfile_installs_the_package_and_serves_the_graph_the_app_and_the_auth(tmp_path):
    """`langgraph dockerfile` (offline: it only writes a file; building the image needs Docker) from this
    langgraph.json: the LangGraph API base image for the configured Python, the checkout added and installed,
    and the graph, the OpenAI app and the API-key auth wired through LANGSERVE_GRAPHS, LANGGRAPH_HTTP and
    LANGGRAPH_AUTH, with paths that exist in the checkout."""
    import json
    import os
    import re

    from tests.devserver import dev_env as server_env
    from tests.devserver import langgraph_exe

    config = json.loads((ROOT / "langgraph.json").read_text())
    out = subprocess.run(
        [langgraph_exe(), "dockerfile", "-c", str(ROOT / "langgraph.json"), str(tmp_path / "Dockerfile")],
        cwd=tmp_path,
        env=server_env() | {"NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = (tmp_path / "Dockerfile").read_text()
    assert text.startswith(f"FROM langchain/langgraph-api:{config['python_version']}"), text[:200]
    (deps,) = re.findall(r"^ADD \. (/deps/[^\s]+)$", text, re.M)  # the checkout, as /deps/<its folder name>
    assert re.search(r"pip install [^\n]*-e \.", text), text  # installed (with its dependencies) as a package
    env = {m[0]: json.loads(m[1].strip("'")) for m in re.findall(r"^ENV (\w+)=('.*')$", text, re.M)}

    def local(path_spec: str) -> Path:
        path, _, obj = path_spec.partition(":")
        assert path.startswith(deps + "/") and obj, path_spec
        return ROOT / path[len(deps) + 1 :]

    assert set(env["LANGSERVE_GRAPHS"]) == set(config["graphs"]) == {"fusion"}
    assert local(env["LANGSERVE_GRAPHS"]["fusion"]) == ROOT / "graphs" / "fusion.py"
    assert local(env["LANGGRAPH_HTTP"]["app"]) == ROOT / "server" / "openai_app.py"
    assert env["LANGGRAPH_HTTP"]["enable_custom_route_auth"] is True
    assert env["LANGGRAPH_AUTH"] == config["auth"]
    assert env["LANGGRAPH_AUTH"]["path"] == "fusiongraph.server.auth:auth"  # a module the package installs
    assert not (ROOT / "Dockerfile").exists() and os.listdir(tmp_path) == ["Dockerfile"]
