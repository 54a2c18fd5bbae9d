"""fusiongraph: use many LLMs as one - decompose, route, judged cascade, record, synthesise."""

import os as _os
from pathlib import Path as _Path

# llama.cpp's OpenMP threads spin while they wait; on shared cores that starves the other work (measured on
# 2 loaded cores: the 1.5B model 1.1 tok/s spinning, 3.2 passive). Set before llama_cpp is loaded; a value
# the user set is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# graphs/, nodes/, prompts/, server/ and store/ are subpackages of fusiongraph (fusiongraph.nodes, ...) that
# live beside this folder in the source tree (pyproject's package-dir). An installed wheel has them inside
# this folder; run from a checkout (tests, `langgraph dev`), they are found in the parent folder.
_here = _Path(__file__).resolve().parent
if not (_here / "nodes").is_dir() and (_here.parent / "nodes" / "__init__.py").is_file():
    __path__.append(str(_here.parent))  # noqa: F821 - a package's __path__
