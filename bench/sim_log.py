"""What the simulator saw during a run: requests in flight over time, from its request log.

The log (bench/sim_latency.py) has each request's start and end on the wall clock; the runs are
timed on the same clock (`time.time()`), so a run's window [t0, t1] selects its requests.
"""

from __future__ import annotations

from typing import Any


def engine_stats(log: list[dict[str, Any]], t0: float, t1: float) -> dict[str, Any]:
    """Requests in flight over [t0, t1]: peak, time-weighted mean (over the wall and while busy),
    busy time, tokens and the sum of the engine's own request latencies."""
    reqs = [r for r in log if r["end"] >= t0 and r["start"] <= t1]
    wall = max(t1 - t0, 1e-9)
    events = sorted([(max(r["start"], t0), 1) for r in reqs] + [(min(r["end"], t1), -1) for r in reqs],
                    key=lambda e: (e[0], e[1]))
    level, peak, area, busy, last = 0, 0, 0.0, 0.0, t0
    for stamp, delta in events:
        if level > 0:
            area += level * (stamp - last)
            busy += stamp - last
        last = stamp
        level += delta
        peak = max(peak, level)
    return {
        "requests": len(reqs),
        "peak_in_flight": peak,
        "mean_in_flight": area / wall,
        "mean_in_flight_when_busy": area / busy if busy else 0.0,
        "busy_s": busy,
        "busy_fraction": busy / wall,
        "prompt_tokens": sum(r.get("prompt_tokens", 0) for r in reqs),
        "completion_tokens": sum(r.get("completion_tokens", 0) for r in reqs),
        "engine_latency_sum_s": sum(r["end"] - r["start"] for r in reqs),
        "samples": sum(r.get("n", 1) for r in reqs),
    }
