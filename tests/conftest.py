import json
import warnings

import pytest

warnings.filterwarnings("ignore", module="langchain_community")
__import__("os").environ["FUSIONGRAPH_DISCOVER_LOCAL"] = "0"  # never probe a developer's local servers in tests
# scripted models start from a cold store: the package's shipped acceptance labels (of the local ladder) are left
# out, except where a test puts them back (tests/unit/test_ladder.py)
__import__("os").environ["FUSIONGRAPH_SHIPPED_ACCEPTANCE"] = "0"


def _roster_without_the_qwen_tiers() -> str:
    """The shipped roster less its Qwen tiers, for every test that does not name a roster: the protocol, server
    and client tests run on the 135M tier as before (fast, and what they assert); the ladder's own tests
    (tests/unit/test_ladder.py) name the shipped fusiongraph/defaults/models.yaml."""
    import os
    import tempfile

    import yaml

    from fusiongraph.defaults import DEFAULT_MODELS

    data = yaml.safe_load(DEFAULT_MODELS.read_text(encoding="utf-8"))
    data["models"] = [m for m in data["models"] if not m.get("gguf_parts")]
    path = os.path.join(tempfile.mkdtemp(prefix="fusiongraph-tests-"), "models.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f)
    return path


__import__("os").environ.setdefault("FUSIONGRAPH_MODELS", _roster_without_the_qwen_tiers())
# the server's own store (API keys, the Responses API's stored conversations) of a test that names none: a fresh
# directory of this session, never the developer's user data dir
__import__("os").environ.setdefault(
    "FUSIONGRAPH_STORE_DIR", __import__("tempfile").mkdtemp(prefix="fusiongraph-tests-store-")
)

from fusiongraph.models.roster import ModelSpec, Roster  # noqa: E402
from fusiongraph.resources import Resources, use_resources  # noqa: E402
from fusiongraph.routing.embeddings import Embedder  # noqa: E402
from fusiongraph.routing.taxonomy import TaskClass, Taxonomy  # noqa: E402
from fusiongraph.store import OutcomeStore  # noqa: E402
from tests.fakes import BagOfWordsEmbeddings, ScriptedChat  # noqa: E402

CHEAP, STRONG = "cheap", "strong"


def judge_script(prompt: str) -> str:
    """The fake LLM judge: answers containing GOOD score 9, the rest 2."""
    answer = prompt.split("Candidate answer:", 1)[-1]
    return json.dumps({"reason": "scripted", "score": 9 if "GOOD" in answer else 2})


def planner_script(prompt: str) -> str:
    """The fake decomposer/synthesiser: splits on ' AND ', fuses by joining."""
    if prompt.startswith("Request:"):
        return "FUSED: " + " | ".join(line[8:] for line in prompt.splitlines() if line.startswith("Answer: "))
    return json.dumps({"subtasks": [p.strip() for p in prompt.split(" AND ")]})


def make_taxonomy(models: list[str]) -> Taxonomy:
    return Taxonomy(
        [
            TaskClass("math", "arithmetic calculations numbers", ["what is 2 plus 2", "compute 17 times 3"], models),
            TaskClass("factual_qa", "facts capital city history", ["what is the capital of france"], models),
            TaskClass("creative_writing", "poems stories haiku", ["write a haiku about rain"], models),
        ]
    )


@pytest.fixture(autouse=True)
def _no_crosscheck_scorer_in_unit_tests(request, monkeypatch):
    """Unit tests run on fakes: the cross-check judge's scorer (a real 270M GGUF) gives no verdict there; the
    integration tests (and tests/unit/test_crosscheck.py, which calls it directly) use the real one."""
    if request.node.get_closest_marker("integration") is None:
        from fusiongraph.judging.kinds import crosscheck

        monkeypatch.setattr(crosscheck, "scorer_path", lambda: None)


@pytest.fixture
def fusion(tmp_path):
    """Build resources with scripted models: fusion(models={id: (spec_kwargs, chat)}) -> Resources in use."""
    entered = []

    def build(models: dict, planner=None, judge=None, store_dir=None, extra_specs=()):
        specs, chats = [], {}
        for model_id, (kwargs, chat) in models.items():
            specs.append(
                ModelSpec(
                    id=model_id,
                    kind=kwargs.pop("kind", "openai_compatible"),
                    base_url="http://127.0.0.1:9/v1",
                    **kwargs,
                )
            )
            if chat is not None:
                chats[model_id] = chat
        specs.append(ModelSpec(id="planner", kind="openai_compatible", base_url="http://127.0.0.1:9/v1", answers=False))
        chats["planner"] = planner or ScriptedChat(script=planner_script)
        specs.append(ModelSpec(id="judge", kind="openai_compatible", base_url="http://127.0.0.1:9/v1", answers=False))
        chats["judge"] = judge or ScriptedChat(script=judge_script)
        specs.extend(extra_specs)
        roster = Roster(specs, chats)
        embedder = Embedder(BagOfWordsEmbeddings())
        store = OutcomeStore(store_dir or tmp_path / "store", embedder.dim, embedder.name)
        res = Resources(
            roster, make_taxonomy([s.id for s in specs if s.id not in ("planner", "judge")]), embedder, store
        )
        cm = use_resources(res)
        cm.__enter__()
        entered.append(cm)
        return res

    yield build
    for cm in reversed(entered):
        cm.__exit__(None, None, None)


def ctx(**overrides):
    from fusiongraph.context import FusionContext

    base = dict(planner_model="planner", judge_model="judge", budget_usd=1.0, quality_threshold=0.6, guides=0)
    base.update(overrides)
    return FusionContext(**base)


@pytest.fixture
def no_defaults(monkeypatch, tmp_path):
    """Discovery sees only what a test gives it: no default ports, an empty home and HF cache."""
    from fusiongraph.models import discovery

    monkeypatch.setattr(discovery, "DEFAULT_PORTS", {})
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-empty"))
    monkeypatch.delenv("FUSIONGRAPH_LOCAL_URLS", raising=False)
    monkeypatch.delenv("FUSIONGRAPH_GGUF_DIRS", raising=False)


@pytest.fixture(scope="module")
def databases():
    """A factory of fresh Postgres databases; every one is dropped when the module is done."""
    from tests.postgres import fresh_databases

    yield from fresh_databases()


@pytest.fixture
def pg(databases):
    """The URL of a fresh database on the real Postgres (tests/postgres.py)."""
    return databases()
