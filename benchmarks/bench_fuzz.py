"""Random requests against the OpenAI-compatible endpoint, in-process with scripted models: how many, and that
none was answered with a 5xx (tests/unit/test_fuzz_endpoint.py, its random-bodies property run N times).

    .venv/bin/python benchmarks/bench_fuzz.py --examples 10000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=10_000)
    args = ap.parse_args(argv)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout", "3600",
         "tests/unit/test_fuzz_endpoint.py::test_random_bodies_are_never_a_500"],
        cwd=ROOT, env=os.environ | {"FUSIONGRAPH_FUZZ_EXAMPLES": str(args.examples)}, capture_output=True, text=True,
    )  # fmt: skip
    result = {
        "random_bodies": args.examples,
        "no_5xx": done.returncode == 0,
        "seconds": round(time.perf_counter() - started, 1),
        "pytest": done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-500:],
    }
    print(json.dumps(result, indent=2))
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
