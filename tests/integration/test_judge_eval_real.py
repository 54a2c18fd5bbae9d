"""The tests of tests/unit/test_judge_eval.py that need the real thing (a shipped GGUF, a llama.cpp server, `langgraph dev`)."""

import json
import os
import subprocess
import sys

import pytest

from fusiongraph.eval.question_sets import generate_easy
from fusiongraph.text import is_correct


@pytest.mark.integration
def test_judge_eval_on_the_shipped_gguf(tmp_path):
    questions = tmp_path / "arith.jsonl"
    # two arithmetic questions (decided by the exact check) and two facts (the soft judges, consistency included)
    questions.write_text("".join(json.dumps(i) + "\n" for i in generate_easy(4, seed=0)))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fusiongraph.cli",
            "judge-eval",
            str(questions),
            "--local-only",
            "--json",
            "--max-tokens",
            "24",
            "--consistency-samples",  # the default is 0 (cheaper tiers only): one model here, so sample it
            "3",
            "--out",
            str(tmp_path / "out"),
            "--store-dir",
            str(tmp_path / "store"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report == json.loads((tmp_path / "out" / "judge_eval.json").read_text())
    answers = [json.loads(line) for line in (tmp_path / "out" / "answers.jsonl").read_text().splitlines()]
    assert report["models"] == ["smollm2-135m"] and report["llm_judge"] == "smollm2-135m"
    assert report["questions"] == 4 and len(answers) == 4
    assert report["answers"] + report["failed_calls"] == 4 and report["failed_calls"] == 0
    assert report["right"] == sum(a["correct"] for a in answers)
    assert set(report["judges"]) == {"rules", "self", "key", "focus", "llm", "consistency", "crosscheck", "aggregate"}
    # the shipped GGUF's tokens come with their text: the key judge reads the answer's own tokens
    assert report["judges"]["key"]["answers"] >= 1
    for kind, m in report["judges"].items():
        assert m["answers"] + m["abstained"] == report["answers"]
        assert m["right_accepted"] + m["wrong_accepted"] == m["accepted"] <= m["answers"]
        assert m["right"] <= m["answers"]
        assert m["auroc"] is None or 0.0 <= m["auroc"] <= 1.0
        assert m["auroc"] is not None or m["right"] in (0, m["answers"])
    assert report["judges"]["aggregate"]["answers"] == 4
    for a in answers:
        assert a["accepted"] == (a["scores"]["aggregate"] >= report["quality_threshold"])
        assert a["answer"] is not None and a["correct"] == is_correct(a["answer"], a["reference"], a["match"])
        decided = any(v["veto"] or v.get("exact") for v in a["verdicts"])
        # the real local model's samples (temperature > 0) were drawn wherever no exact check or veto decided
        assert (a["scores"]["consistency"] is not None) == (not decided), a
        # the cross-check judge (Gemma 3 270M, a dependency) is asked wherever nothing decided
        assert (a["scores"]["crosscheck"] is None) or not decided, a
        assert any(v["judge"] == "crosscheck" for v in a["verdicts"]) == (not decided), a
        exact = any(v.get("exact") for v in a["verdicts"])
        assert a["acceptance"]["by"] == ("exact" if exact else "veto" if decided else "prior")  # a fresh store: no fit
    assert report["by_model"]["smollm2-135m"] == report["judges"]
    assert report["wall_time_s"] > 0
