"""`serve` and the client's own conversation: its system message (appended or ignored), earlier turns
rendered as prior `# Query:` / `# Answer:` turns after the examples, retrieval by the last user
message, and conversations the aligned model cannot take, refused with the field that is wrong."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from agents.formatting import build_policy_prompt, format_turn
from tests.drpo.test_serve import QUERY, aligned_server, artifacts, client, read, sent, world, world_backend

pytestmark = [pytest.mark.anyio, pytest.mark.real_engine]
__all__ = ["artifacts", "world"]  # fixtures

CLIENT_SYSTEM = "Answer in French."


async def ask(url: str, name: str, messages: list[dict[str, Any]]) -> Any:
    async with client(url) as c:
        return await c.chat.completions.create(model=name, messages=messages)


@pytest.mark.parametrize("policy", ["append", "ignore"])
async def test_the_clients_system_message_follows_the_aligned_prompt_or_is_ignored(artifacts, world, tmp_path, policy):
    artifact = read(artifacts["chat"])
    name = f"drpo-{artifact.run_id}"
    server = aligned_server(artifacts["chat"], world_backend(world), tmp_path, client_system=policy)
    async with server as (url, s):
        await ask(url, name, [{"role": "user", "content": QUERY}])
        await ask(url, name, [{"role": "system", "content": CLIENT_SYSTEM}, {"role": "user", "content": QUERY}])
        examples = s.model.request(QUERY).examples
    alone, with_system = (body["messages"] for body in sent(world))
    if policy == "ignore":
        assert with_system == alone
        return
    expected = build_policy_prompt(f"{artifact.prompt}\n\n{CLIENT_SYSTEM}", examples, QUERY)
    assert with_system[0]["content"] == expected.system
    assert with_system[0]["content"].startswith(f"# Instructions\n\n{artifact.prompt}\n\n{CLIENT_SYSTEM}\n\n# Query:")
    assert with_system[1] == alone[1]  # the same query; the same examples, retrieved by it
    assert with_system[0]["content"].replace(f"\n\n{CLIENT_SYSTEM}", "") == alone[0]["content"]


async def test_a_multi_turn_conversation_keeps_its_turns_after_the_examples_and_retrieves_by_the_last(artifacts, world,
                                                                                                   tmp_path):
    artifact = read(artifacts["chat"])
    first, answer = "What is a generator in Python?", "A function that yields values one at a time."
    conversation = [
        {"role": "system", "content": CLIENT_SYSTEM},
        {"role": "user", "content": first},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": [{"type": "text", "text": QUERY}]},  # content parts are read as text
    ]
    async with aligned_server(artifacts["chat"], world_backend(world), tmp_path) as (url, s):
        await ask(url, f"drpo-{artifact.run_id}", conversation)
        examples = s.model.request(QUERY).examples
    assert examples != s.model.request(first).examples  # so retrieval by the wrong message would show
    [body] = sent(world)
    system, user = body["messages"]
    assert user == {"role": "user", "content": format_turn(QUERY)}
    turns = "\n\n".join(format_turn(e.query, e.answer) for e in examples)
    assert system["content"].endswith(f"{turns}\n\n{format_turn(first, answer)}")
    assert system["content"].startswith(f"# Instructions\n\n{artifact.prompt}\n\n{CLIENT_SYSTEM}")


async def test_a_completion_mode_artifact_gets_the_conversation_in_its_raw_text(artifacts, world, tmp_path):
    artifact = read(artifacts["completion"])
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                    {"role": "user", "content": QUERY}]
    async with aligned_server(artifacts["completion"], world_backend(world), tmp_path) as (url, s):
        await ask(url, f"drpo-{artifact.run_id}", conversation)
        examples = s.model.request(QUERY).examples
    [body] = sent(world, "/v1/completions")
    prompt = body["prompt"]
    assert prompt.endswith(f"{format_turn('Hi', 'Hello!')}\n\n{format_turn(QUERY)}")
    assert prompt.index(format_turn(examples[-1].query, examples[-1].answer)) < prompt.index("# Query:\nHi")


@pytest.mark.parametrize(
    ("messages", "param", "says"),
    [
        pytest.param([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "messages",
                     "end with a user message", id="ends-with-assistant"),
        pytest.param([{"role": "assistant", "content": "hi"}, {"role": "user", "content": "yo"}], "messages",
                     "must follow a user message", id="starts-with-assistant"),
        pytest.param([{"role": "user", "content": "  "}], "messages", "empty", id="empty-query"),
        pytest.param([{"role": "tool", "content": "x", "tool_call_id": "1"}, {"role": "user", "content": "hi"}],
                     "messages.0.role", "not supported", id="tool-role"),
        pytest.param([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}],
                     "messages.0.content", "only text", id="image"),
        pytest.param([], "messages", "at least 1", id="no-messages"),
    ],
)
async def test_conversations_the_aligned_model_cannot_take_are_refused_with_the_field(artifacts, world, tmp_path,
                                                                                     messages, param, says):
    name = f"drpo-{read(artifacts['chat']).run_id}"
    async with aligned_server(artifacts["chat"], world_backend(world), tmp_path) as (url, _), client(url) as c:
        with pytest.raises(openai.BadRequestError, match=says) as refused:
            await c.chat.completions.create(model=name, messages=messages)
    assert refused.value.body["param"] == param and refused.value.body["type"] == "invalid_request_error"
    assert sent(world) == []


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        pytest.param({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools",
                     id="tools"),
        pytest.param({"response_format": {"type": "json_object"}}, "response_format", id="json-mode"),
        pytest.param({"logprobs": True}, "logprobs", id="logprobs"),
        pytest.param({"stop": ["a", "b", "c", "d", "e"]}, "stop", id="too-many-stops"),
    ],
)
async def test_what_the_aligned_model_cannot_honour_is_a_400_never_silently_dropped(artifacts, world, tmp_path, extra,
                                                                                   param):
    name = f"drpo-{read(artifacts['chat']).run_id}"
    async with aligned_server(artifacts["chat"], world_backend(world), tmp_path) as (url, _), client(url) as c:
        with pytest.raises(openai.BadRequestError) as refused:
            await c.chat.completions.create(model=name, messages=[{"role": "user", "content": QUERY}], **extra)
    assert refused.value.body["param"] == param
    assert sent(world) == []


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        pytest.param({"stream": "yes"}, "stream", id="stream-as-a-string"),
        pytest.param({"n": True}, "n", id="n-as-true"),
        pytest.param({"max_tokens": True}, "max_tokens", id="max-tokens-as-true"),
        pytest.param({"temperature": "0.5"}, "temperature", id="temperature-as-a-string"),
        pytest.param({"seed": "7"}, "seed", id="seed-as-a-string"),
        pytest.param({"stream": True, "stream_options": {"include_usage": "no"}}, "stream_options.include_usage",
                     id="include-usage-as-a-string"),
    ],
)
def test_a_field_of_the_wrong_json_type_is_a_400_not_coerced(extra, param):
    """"yes" is no boolean and true no count: read leniently, `stream: "yes"` streamed and
    `max_tokens: true` answered one token, where OpenAI's API answers 400."""
    from drpo.api import INFERENCE_SAMPLING
    from drpo.serve_faults import ApiError
    from drpo.serve_wire import ServeLimits, chat_call

    with pytest.raises(ApiError) as refused:
        chat_call({"messages": [{"role": "user", "content": QUERY}], **extra}, INFERENCE_SAMPLING, ServeLimits())
    assert refused.value.status == 400 and refused.value.param == param


def test_numbers_of_the_right_json_type_still_pass():
    from drpo.api import INFERENCE_SAMPLING
    from drpo.serve_wire import ServeLimits, chat_call

    call = chat_call({"messages": [{"role": "user", "content": QUERY}], "temperature": 1, "top_p": 1, "n": 2,
                      "max_tokens": 9, "seed": 3, "stream": True}, INFERENCE_SAMPLING, ServeLimits())
    assert (call.sampling.temperature, call.sampling.top_p, call.sampling.n, call.sampling.max_tokens,
            call.sampling.seed, call.stream) == (1.0, 1.0, 2, 9, 3, True)


def test_empty_stop_strings_are_dropped_before_the_stop_strings_are_counted():
    """The bound on stop strings, checked before validation, counts what is sent on: empty ones are
    dropped, as they were when the bound was checked after validation."""
    from drpo.api import INFERENCE_SAMPLING
    from drpo.serve_faults import ApiError
    from drpo.serve_wire import ServeLimits, chat_call

    messages = [{"role": "user", "content": QUERY}]
    call = chat_call({"messages": messages, "stop": ["", "", "x", "", "y"]}, INFERENCE_SAMPLING, ServeLimits())
    assert call.sampling.stop[-2:] == ["x", "y"]
    with pytest.raises(ApiError, match="at most 4 stop strings"):
        chat_call({"messages": messages, "stop": ["a", "b", "", "c", "d", "e"]}, INFERENCE_SAMPLING, ServeLimits())


def test_thousands_of_messages_are_read_into_turns_as_a_few_are():
    """Consecutive messages of one role are one turn however many there are (a turn's pieces are
    joined once: appended one by one, a 1 MiB body of one-letter messages cost quadratic copying)."""
    from drpo.api import INFERENCE_SAMPLING
    from drpo.serve_wire import ServeLimits, chat_call

    pieces = [f"part {i}" for i in range(2000)]
    alternating = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(2001)]
    same_role = chat_call({"messages": [{"role": "user", "content": p} for p in pieces]}, INFERENCE_SAMPLING,
                          ServeLimits())
    turns = chat_call({"messages": [{"role": "system", "content": "s"}] * 3 + alternating}, INFERENCE_SAMPLING,
                      ServeLimits())
    assert same_role.conversation.query == "\n\n".join(pieces) and same_role.conversation.history == ()
    assert len(turns.conversation.history) == 1000 and turns.conversation.query == "turn 2000"
    assert turns.conversation.history[-1].answer == "turn 1999" and turns.conversation.system == "s\n\ns\n\ns"


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        pytest.param({"messages": [{"role": "user", "content": "hi"}] * 4 + [{"role": 5}]}, "messages",
                     "at most 4 messages per request on this server, got 5", id="messages"),
        pytest.param({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}] * 3},
                                   {"role": "user", "content": [{"type": 5}] * 2}]}, "messages",
                     "at most 4 content parts in all messages on this server, got 5", id="content-parts"),
        pytest.param({"messages": [{"role": "user", "content": "hi"}], "stop": [1] * 150_000}, "stop",
                     "at most 4 stop strings", id="stop"),
    ],
)
def test_an_array_over_its_bound_is_refused_before_its_items_are_validated(body, param, says):
    """Validation costs CPU per item in one call that holds the event loop (34,000 messages in a
    1 MiB body: 0.14 s), so the count comes first: the items over the bound here are not even valid."""
    from drpo.api import INFERENCE_SAMPLING
    from drpo.serve_faults import ApiError
    from drpo.serve_wire import ServeLimits, chat_call

    with pytest.raises(ApiError) as refused:
        chat_call(body, INFERENCE_SAMPLING, ServeLimits(max_messages=4))
    assert refused.value.status == 400 and refused.value.param == param and says in refused.value.message


def test_a_completion_with_many_prompts_is_refused_before_they_are_validated():
    from drpo.api import INFERENCE_SAMPLING
    from drpo.serve_faults import ApiError
    from drpo.serve_wire import ServeLimits, completion_call

    with pytest.raises(ApiError, match="exactly one prompt") as refused:
        completion_call({"prompt": ["q", 1, 2]}, INFERENCE_SAMPLING, ServeLimits())
    assert refused.value.param == "prompt"
