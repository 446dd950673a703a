"""What the simulator answers (bench/sim_answers.py): text of a set length, valid schema instances."""

from __future__ import annotations

from bench.sim_answers import filler_text, prompt_chars, requested_schema, schema_instance


def test_schema_instance_covers_refs_enums_arrays_and_bounds():
    schema = {
        "$defs": {"Item": {"type": "object", "properties": {"k": {"type": "integer", "minimum": 7}}}},
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 2},
            "mode": {"enum": ["a", "b"]},
            "score": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 3}]},
            "flag": {"type": "boolean"},
        },
    }
    value = schema_instance(schema, string_chars=40, salt="s")
    assert value == {"items": [{"k": 7}, {"k": 7}], "mode": "a", "score": 3, "maybe": "s a", "flag": True}


def test_filler_text_has_the_exact_length_and_starts_with_its_salt():
    for chars in (1, 7, 160):
        text = filler_text(chars, "r3s0")
        assert len(text) == chars and not text.endswith(" ")
    assert filler_text(40, "r3s0").startswith("r3s0 ") and filler_text(40, "r3s0") != filler_text(40, "r3s1")


def test_the_requested_schema_is_found_wherever_an_sdk_puts_it():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    assert requested_schema({"response_format": fmt}) == (schema, "x")
    assert requested_schema({"structured_outputs": {"json": '{"type": "object"}'}}) == ({"type": "object"},
                                                                                         "structured_outputs")
    assert requested_schema({"guided_json": schema}) == (schema, "guided_json")
    assert requested_schema({"messages": []}) == (None, None)


def test_prompt_characters_of_chat_parts_and_completion_prompts():
    body = {"messages": [{"role": "user", "content": "abc"}, {"role": "user", "content": [{"text": "de"}, "x"]}]}
    assert prompt_chars(body, chat=True) == 5
    assert prompt_chars({"prompt": ["ab", "c"]}, chat=False) == 3
