"""HTTP extras mounted into the LangGraph server (langgraph.json "http.app"): an OpenAI-compatible endpoint."""
