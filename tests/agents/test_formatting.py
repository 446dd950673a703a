"""The base model's prompt: one layout for optimization and inference."""

import pytest

from agents.formatting import STOPS, build_policy_prompt, clean_response
from schemas.messages import Example

EXAMPLES = [Example(query="What is 2+2?", answer="4."), Example(query="Name a colour.", answer="Blue.")]


def test_the_prompt_puts_shared_parts_first_and_ends_at_the_answer_marker():
    prompt = build_policy_prompt("Be kind.", EXAMPLES, "How tall is Everest?")
    assert prompt.system == (
        "# Instructions\n\nBe kind.\n\n"
        "# Query:\nWhat is 2+2?\n\n# Answer:\n<START>\n4.\n<END>\n\n"
        "# Query:\nName a colour.\n\n# Answer:\n<START>\nBlue.\n<END>"
    )
    assert prompt.user == "# Query:\nHow tall is Everest?\n\n# Answer:\n<START>"


def test_chat_and_completion_forms_carry_the_same_text():
    prompt = build_policy_prompt("Be kind.", EXAMPLES, "Q?")
    system, user = prompt.messages()
    assert (system.role, user.role) == ("system", "user")
    assert prompt.text() == f"{system.content}\n\n{user.content}"


def test_requests_with_the_same_prompt_and_examples_share_their_prefix():
    a = build_policy_prompt("Be kind.", EXAMPLES, "First?").text()
    b = build_policy_prompt("Be kind.", EXAMPLES, "Second?").text()
    shared = len(build_policy_prompt("Be kind.", EXAMPLES, "").system)
    assert a[:shared] == b[:shared]


def test_no_examples_leaves_header_and_prompt():
    assert build_policy_prompt("P", [], "Q").system == "# Instructions\n\nP"


def test_the_stops_end_the_answer_and_any_invented_next_turn():
    assert "<END>" in STOPS and "\n# Query" in STOPS and "\n#Query" in STOPS
    assert clean_response("<START>\nParis.\n<END>\n# Query: more") == "Paris."
    assert clean_response("Paris.\n# Query:\nAnd Rome?") == "Paris."
    assert clean_response("   ") == ""


@pytest.mark.parametrize("stop", STOPS)
def test_clean_response_cuts_at_every_stop(stop):
    assert clean_response(f"<START>\nParis.{stop}junk") == "Paris."


def test_eot_id_is_a_stop_after_the_four_openai_keeps():
    assert STOPS[-1] == "<|eot_id|>" and STOPS[:4] == ["<END>", "<END", "\n# Query", "\n#Query"]
