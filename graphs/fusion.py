"""The fusion graph: standalone -> decompose -> (per subtask, in parallel: privacy -> taxonomy -> cache ->
neighbours -> cascade -> record) -> synthesize -> settle (a LangGraph API run is charged to its API key).
Wiring only; each node lives in nodes/."""

from langgraph.graph import END, START, StateGraph

from fusiongraph.context import FusionContext
from fusiongraph.nodes.cache import after_cache, cache
from fusiongraph.nodes.cascade import cascade
from fusiongraph.nodes.decompose import decompose, fan_out_subtasks
from fusiongraph.nodes.neighbours import neighbours
from fusiongraph.nodes.privacy import privacy
from fusiongraph.nodes.record import record
from fusiongraph.nodes.settle import settle
from fusiongraph.nodes.standalone import standalone
from fusiongraph.nodes.synthesize import synthesize
from fusiongraph.nodes.taxonomy import taxonomy
from fusiongraph.state import FusionInput, FusionOutput, FusionState, SubtaskOutput, SubtaskState

MAX_PARALLEL_CALLS = 64


def build_subtask_graph():
    """One subtask: look for sensitive values, classify, answer from the cache or consult the neighbours and
    run the judged cascade, record the outcomes."""
    builder = StateGraph(SubtaskState, context_schema=FusionContext, output_schema=SubtaskOutput)
    builder.add_node("privacy", privacy)
    builder.add_node("taxonomy", taxonomy)
    builder.add_node("cache", cache)
    builder.add_node("neighbours", neighbours)
    builder.add_node("cascade", cascade)
    builder.add_node("record", record)
    builder.add_edge(START, "privacy")
    builder.add_edge("privacy", "taxonomy")
    builder.add_edge("taxonomy", "cache")
    builder.add_conditional_edges("cache", after_cache, ["neighbours", "record"])
    builder.add_edge("neighbours", "cascade")
    builder.add_edge("cascade", "record")
    builder.add_edge("record", END)
    return builder.compile(name="subtask")


def build_graph(checkpointer=None):
    """The whole graph; `checkpointer` keeps threads in-process (the LangGraph server brings its own)."""
    builder = StateGraph(
        FusionState, context_schema=FusionContext, input_schema=FusionInput, output_schema=FusionOutput
    )
    builder.add_node("standalone", standalone)
    builder.add_node("decompose", decompose)
    builder.add_node("subtask", build_subtask_graph())
    builder.add_node("synthesize", synthesize)
    builder.add_node("settle", settle)
    builder.add_edge(START, "standalone")
    builder.add_edge("standalone", "decompose")
    builder.add_conditional_edges("decompose", fan_out_subtasks, ["subtask"])
    builder.add_edge("subtask", "synthesize")
    builder.add_edge("synthesize", "settle")
    builder.add_edge("settle", END)
    # Subtasks wait on network calls, not the CPU: allow more parallel branches than the default thread
    # pool (cores + 4) so 8 subtasks (each a node thread plus a model-call task) all run at once.
    return builder.compile(name="fusion", checkpointer=checkpointer).with_config(max_concurrency=MAX_PARALLEL_CALLS)


graph = build_graph()
