"""The simulated engine's latency model and request log (no HTTP: bench/sim_engine.py serves it).

Every parameter is in `SimParams`; all zero = a zero-latency engine:

- a request waits `ttft_s + prefill_s_per_token * prompt_tokens` (time to first token and prefill;
  prefill is per request, not batched), then decodes;
- decoding is continuous batching: one engine-wide clock ticks one decode step at a time, and every
  sequence in flight gains one token per tick. A tick lasts
  `decode_step_s * (1 + sequences_in_flight / step_growth)`, so the step grows slowly with the batch;
- a request with `n` > 1 puts n sequences into the batch side by side (as vLLM does): its latency
  is set by its longest sample, its `completion_tokens` is the sum over samples;
- prompt tokens are estimated as characters / `chars_per_token` (4).

Every request is logged (start and end on the wall clock `time.time()`, requests and sequences in
flight at start and end, prompt and completion tokens, n, schema name). The decode clock is one
task whatever the batch and requests wait on futures, so 1,000 and more can be in flight at once.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import time
from dataclasses import dataclass, field, fields
from typing import Any

from bench.sim_answers import filler_text, prompt_chars, requested_schema, schema_instance


@dataclass
class SimParams:
    """The latency model and answer sizes; changed between runs over HTTP (`POST /_sim/params`)."""

    ttft_s: float = 0.02
    """Time to first token, per request."""
    prefill_s_per_token: float = 0.00002
    """Prefill time per prompt token, per request."""
    decode_step_s: float = 0.004
    """One decode step with an empty batch."""
    step_growth: float = 256.0
    """A step lasts decode_step_s * (1 + sequences in flight / step_growth)."""
    text_tokens: int = 200
    """Output tokens of a plain-text answer (capped by max_tokens)."""
    string_tokens: int = 40
    """Tokens of every string in a structured answer."""
    chars_per_token: int = 4
    model: str = "sim"

    @classmethod
    def zero(cls, **overrides: Any) -> SimParams:
        """A zero-latency engine (answers as fast as the HTTP stack allows)."""
        return cls(**{"ttft_s": 0.0, "prefill_s_per_token": 0.0, "decode_step_s": 0.0, **overrides})

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name: f.type for f in fields(self)}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown simulator parameter {key!r}")
            setattr(self, key, type(getattr(self, key))(value))


class _Pending:
    """A request's sequences still decoding, and the future its handler waits on."""

    __slots__ = ("future", "remaining")

    def __init__(self, remaining: int, future: asyncio.Future) -> None:
        self.remaining = remaining
        self.future = future


class DecodeClock:
    """Continuous batching: one clock; each tick, every sequence in flight gains one token."""

    def __init__(self, params: SimParams) -> None:
        self.params = params
        self.tick = 0
        self.sequences = 0
        self._heap: list[tuple[int, int, _Pending]] = []
        self._ids = itertools.count()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    async def decode(self, lengths: list[int]) -> None:
        """Return when every sequence (one per sample, `lengths` tokens each) has decoded."""
        if self.params.decode_step_s <= 0 or not lengths:
            return
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run())
        pending = _Pending(len(lengths), loop.create_future())
        for length in lengths:
            heapq.heappush(self._heap, (self.tick + max(1, length), next(self._ids), pending))
            self.sequences += 1
        self._wake.set()  # type: ignore[union-attr]
        await pending.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            if not self._heap:
                self._wake.clear()  # type: ignore[union-attr]
                await self._wake.wait()  # type: ignore[union-attr]
                deadline = loop.time()
                continue
            step = self.params.decode_step_s * (1 + self.sequences / self.params.step_growth)
            now = loop.time()
            deadline = max(deadline + step, now - step)  # a starved loop does not race to catch up
            await asyncio.sleep(max(0.0, deadline - now))  # always yields, even with a zero step
            self.tick += 1
            while self._heap and self._heap[0][0] <= self.tick:
                _, _, pending = heapq.heappop(self._heap)
                self.sequences -= 1
                pending.remaining -= 1
                if pending.remaining == 0 and not pending.future.done():
                    pending.future.set_result(None)


@dataclass
class SimEngine:
    """The engine behind the HTTP app: latency, answers and the request log."""

    params: SimParams = field(default_factory=SimParams)
    log: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    _counter: Any = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.clock = DecodeClock(self.params)

    def reset(self) -> None:
        self.log = []
        self.peak_in_flight = self.in_flight

    async def handle(self, body: dict[str, Any], *, chat: bool) -> dict[str, Any]:
        p = self.params
        request_id = next(self._counter)
        started = time.time()
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        record: dict[str, Any] = {"id": request_id, "endpoint": "chat" if chat else "completions",
                                  "start": started, "in_flight_start": self.in_flight,
                                  "sequences_start": self.clock.sequences}
        try:
            n = max(1, int(body.get("n") or 1))
            max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 1 << 30)
            prompt_tokens = -(-prompt_chars(body, chat) // p.chars_per_token)
            schema, schema_name = requested_schema(body)
            texts, lengths, finish = [], [], []
            for i in range(n):
                if schema is not None:
                    value = schema_instance(schema, string_chars=p.string_tokens * p.chars_per_token,
                                            salt=f"r{request_id}s{i}")
                    text = json.dumps(value)
                    tokens = -(-len(text) // p.chars_per_token)
                    reason = "stop"
                else:
                    tokens = min(p.text_tokens, max_tokens)
                    text = filler_text(tokens * p.chars_per_token, f"r{request_id}s{i}")
                    reason = "length" if tokens < p.text_tokens else "stop"
                texts.append(text)
                lengths.append(tokens)
                finish.append(reason)
            wait = p.ttft_s + p.prefill_s_per_token * prompt_tokens
            if wait > 0:
                await asyncio.sleep(wait)
            await self.clock.decode(lengths)
            completion_tokens = sum(lengths)
            record.update(n=n, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          schema=schema_name, status=200)
            return _response(chat, request_id, p.model, texts, finish, prompt_tokens, completion_tokens)
        except asyncio.CancelledError:
            record["status"] = 499
            raise
        finally:
            self.in_flight -= 1
            record.update(end=time.time(), in_flight_end=self.in_flight + 1)
            record["latency_s"] = record["end"] - started
            self.log.append(record)


def _response(chat: bool, request_id: int, model: str, texts: list[str], finish: list[str],
              prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """The OpenAI-shaped response body: a chat completion or a text completion."""
    if chat:
        choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": f, "logprobs": None}
                   for i, (t, f) in enumerate(zip(texts, finish))]
        kind = "chat.completion"
    else:
        choices = [{"index": i, "text": t, "finish_reason": f, "logprobs": None}
                   for i, (t, f) in enumerate(zip(texts, finish))]
        kind = "text_completion"
    return {
        "id": f"sim-{request_id}", "object": kind, "created": int(time.time()), "model": model, "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }
