"""The worked examples of docs/extending.md: each is one file in docs/examples/, shown verbatim in the doc, and
registering it (importing the file, as the package's one registry line does) is all it takes to use it."""

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from fusiongraph.graphs.fusion import graph
from fusiongraph.judging.base import JUDGES
from fusiongraph.models.kinds.base import MODEL_KINDS
from fusiongraph.models.roster import Roster
from fusiongraph.routing.router import Router
from fusiongraph.routing.strategies.base import STRATEGIES
from fusiongraph.store.outcomes import OutcomeStore
from fusiongraph.store.types import Outcome
from tests.conftest import ctx
from tests.unit.test_records import models, validate

DOCS = Path(__file__).resolve().parents[2] / "docs"
EXAMPLES = DOCS / "examples"


def load_example(name: str):
    """Import docs/examples/NAME.py under a private module name: its decorator registers it."""
    spec = importlib.util.spec_from_file_location(f"fusiongraph_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_example_file_is_shown_verbatim_in_the_extending_guide():
    text = (DOCS / "extending.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    files = sorted(EXAMPLES.glob("*.py"))
    assert {"hedge_judge.py", "cautious_strategy.py", "ollama_kind.py", "snapshot_backend.py"} <= {
        f.name for f in files
    }
    for path in files:
        assert path.read_text(encoding="utf-8") in blocks, f"{path.name} is not shown as it is in docs/extending.md"
        assert f"docs/examples/{path.name}" in text


@pytest.fixture
def hedge_judge():
    load_example("hedge_judge")
    try:
        yield JUDGES["hedge"]
    finally:
        JUDGES.pop("hedge", None)


def test_the_example_judge_scores_every_attempt_of_a_run(fusion, hedge_judge):
    fusion(models(cheap_reply="I think it is probably Lyon.", strong_reply="Paris."))
    out = graph.invoke({"query": "What is the capital of France?"}, context=ctx())
    verdicts = {a["model"]: a["verdicts"][-1] for a in validate(out)}
    assert verdicts["cheap"] == {"judge": "hedge", "score": 0.0, "veto": False, "detail": "hedges: i think, probably"}
    assert verdicts["strong"]["judge"] == "hedge" and verdicts["strong"]["score"] == 1.0


@pytest.fixture
def cautious_strategy():
    load_example("cautious_strategy")
    try:
        yield STRATEGIES["cautious"]
    finally:
        STRATEGIES.pop("cautious", None)


def test_the_example_strategy_is_what_the_router_knob_names(cautious_strategy):
    store = OutcomeStore(None, 4, "t")
    e = np.array([1, 0, 0, 0], np.float32)
    for i in range(6):  # model a: right in the class, wrong on this kind of prompt; b the other way round
        v = np.array([0, 1, i, 0], np.float32)
        store.record(f"other {i}", v / np.linalg.norm(v), "math", [Outcome("a", 1.0, True), Outcome("b", 0.0, False)])
    store.record("this", e, "math", [Outcome("a", 0.0, False), Outcome("b", 1.0, True)])
    router = Router(store, probe_background=False)
    nbrs = router.neighbours(e, k=4, min_similarity=0.5)
    cautious = router.predict(["a", "b"], {"math": 1.0}, nbrs, mode="cautious")
    knn = router.predict(["a", "b"], {"math": 1.0}, nbrs, mode="knn")
    taxonomy = router.predict(["a", "b"], {"math": 1.0}, nbrs, mode="taxonomy")
    for m in ("a", "b"):
        want = min(knn[m].p_success, taxonomy[m].p_success)
        assert cautious[m].p_success == pytest.approx(want, abs=0.02)
    assert cautious["a"].p_success < taxonomy["a"].p_success  # the neighbours hold it back


@pytest.fixture
def ollama_kind():
    load_example("ollama_kind")
    try:
        yield MODEL_KINDS["ollama"]
    finally:
        MODEL_KINDS.pop("ollama", None)


def test_the_example_model_kind_builds_what_a_roster_entry_names(ollama_kind, tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  - id: llama3\n    kind: ollama\n    model: llama3.2:1b\n")
    roster = Roster.from_yaml(path)
    chat = roster.chat_model("llama3", max_tokens=64, timeout_s=30)
    assert type(chat).__name__ == "ChatOpenAI"
    assert chat.model_name == "llama3.2:1b" and chat.openai_api_base == "http://127.0.0.1:11434/v1"
    assert chat.max_tokens == 64 and chat.max_retries == 0
    assert roster["llama3"].unavailable_reason(local_only=True) == "local_only is set"
    path.write_text("models:\n  - id: nameless\n    kind: ollama\n")
    with pytest.raises(Exception, match="needs `model:`"):
        Roster.from_yaml(path)


@pytest.fixture
def snapshot_backend():
    from fusiongraph.store.backend import BACKENDS, register_backend

    module = load_example("snapshot_backend")
    register_backend("snapshot", module.SnapshotBackend)  # the registry line: an entry in BACKENDS
    try:
        yield module.SnapshotBackend
    finally:
        BACKENDS.pop("snapshot", None)


def test_the_example_store_backend_opens_by_its_url_scheme(snapshot_backend, tmp_path):
    from fusiongraph.store.backend import StoreError
    from fusiongraph.store.outcomes import open_store

    live = open_store(tmp_path / "live", 4, "t")
    e = np.array([1, 0, 0, 0], np.float32)
    live.record("What is 2+2?", e, "math", [Outcome("a", 1.0, True)])
    live.close()

    snap = open_store(f"snapshot://{tmp_path / 'live'}", 4, "t")
    (found,) = snap.neighbours(e, 4)
    assert found.text == "What is 2+2?" and found.outcomes["a"] == 1.0
    with pytest.raises(StoreError, match="read-only"):
        snap.record("Another", e, "math", [Outcome("a", 0.0, False)])
    assert len(snap.neighbours(e, 4)) == 1  # nothing was written
    snap.close()
    with pytest.raises(StoreError, match="no outcome store"):
        open_store(f"snapshot://{tmp_path / 'nowhere'}", 4, "t")
