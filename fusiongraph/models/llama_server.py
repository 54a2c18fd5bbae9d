"""``python -m fusiongraph.models.llama_server ARGS``: llama-cpp-python's OpenAI-compatible server, safe on AMX CPUs.

The same as ``python -m llama_cpp.server ARGS``, except that models are built without llama.cpp's extra
CPU buffer types, which crash ``llama_decode`` on CPUs with AMX (:func:`fusiongraph.models.local_llm._build_llama`).
"""

from __future__ import annotations

import runpy

from fusiongraph.models.local_llm import without_extra_bufts

if __name__ == "__main__":
    without_extra_bufts()
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
