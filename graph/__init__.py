"""The LangGraph state machines (the beam search in beam.py, example curation in curation.py), the
wiring of agents to roles (roles.py), the selection rules (selectors/) and the record store (records.py)."""
