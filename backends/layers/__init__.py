"""Layers between agents and engines, one concern each; composed by backends/stack.py.

Outermost first: sampling (n choices) → outage → retry → validation → cache → budget → limits →
meter → the engine (or the endpoint router over several engines)."""
