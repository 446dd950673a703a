"""The LangGraph state machines: the beam search over system prompts (beam.py)."""
