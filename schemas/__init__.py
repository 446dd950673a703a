"""Typed messages, configuration and artifacts: every type that crosses a boundary."""
