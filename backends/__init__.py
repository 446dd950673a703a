"""LLM engines behind one async protocol (see base.py)."""
