"""A server that echoes the API key in its error text: the key never leaves the engine.

Some servers put the key they were sent into their error message ("Incorrect API key provided:
sk-..."), in an HTML error page, a FastAPI `detail`, or URL-quoted. Whatever the status and the
key's length (4 characters and up), the key is in no fault message, no `CallFailed` text, no
traceback (causes included: the SDK's own exception is scrubbed too), and no log line, of
structlog or of the standard logging of any library (the SDK's debug lines included).
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

import pytest

from backends.errors import CallFailed, EngineConfigError, EngineRefused
from backends.openai_compat import MAX_FAULT_TEXT
from tests.hostile.calls import KEY, KEY_ENV, call, chat_request, engine_at, shown, stacked, text_request
from tests.hostile.servers import Behaviour, chat, error, send, serving

pytestmark = [pytest.mark.anyio, pytest.mark.real_engine]

KEYS = {"long": KEY, "four_characters": "k3Y9", "url_and_json_specials": "Zq/8+w=x\"y"}


def echoes(key: str) -> dict[str, tuple[Behaviour, bool]]:
    """Behaviours that put `key` in their reply -> whether the scrubbed text is shown ("***")."""
    return {
        "400_message": (send(400, error(f"Invalid request for key {key}: temperature")), True),
        "422_detail": (send(422, {"detail": [{"msg": f"bad header Bearer {key}"}]}), True),
        "429_message": (send(429, error(f"Rate limit reached for key {key}"), headers={"Retry-After": "0"}), True),
        "500_message": (send(500, error(f"internal error while serving {key}")), True),
        "500_plain_text": (send(500, f"panic: auth {key} rejected", content_type="text/plain"), True),
        "502_html_page": (send(502, f"<html><body><p>Bad gateway for {key}</p></body></html>",
                               content_type="text/html"), True),
        "400_url_quoted": (send(400, error(f"see https://x.example/?k={quote(key, safe='')}")), True),
        "400_json_escaped": (send(400, error(f"got {json.dumps(key)[1:-1]}")), True),
        "401_message": (send(401, error(f"Incorrect API key provided: {key}")), False),
        "200_html_body": (send(200, f"<html>{key}</html>", content_type="text/html"), False),
        "200_invalid_json": (send(200, f'{{"choices": [{{"message": "{key}"'), False),
    }


CASES = [(key, name) for key in KEYS for name in echoes(KEYS[key])]


def assert_never_shows(secret: str, error: BaseException, log_lines: Any,
                       caplog: pytest.LogCaptureFixture) -> None:
    assert secret not in shown(error)  # its text and its whole traceback, every cause included
    assert not [line for line in log_lines if secret in repr(line)]
    assert secret not in caplog.text


@pytest.mark.parametrize(("key", "name"), CASES, ids=[f"{k}-{n}" for k, n in CASES])
async def test_an_echoed_key_is_in_no_fault_traceback_or_log_line(key, name, monkeypatch, log_lines, caplog):
    caplog.set_level(logging.DEBUG)
    secret = KEYS[key]
    monkeypatch.setenv(KEY_ENV, secret)
    behaviour, scrubbed_text_shown = echoes(secret)[name]
    async with serving(behaviour) as server, stacked(server.url, max_attempts=2, max_retry_wait_s=0) as (engine, _):
        with pytest.raises((CallFailed, EngineRefused)) as failed:
            await call(engine, chat_request())
    assert server.hits[0].headers["authorization"] == f"Bearer {secret}"  # the server did get the key
    assert_never_shows(secret, failed.value, log_lines, caplog)
    if scrubbed_text_shown:
        assert "***" in str(failed.value)  # the server's message is kept, with the key taken out


async def test_a_key_on_the_edge_of_the_shown_text_is_scrubbed_before_the_text_is_cut(log_lines, caplog):
    """Cutting first would leave the key's first characters in the message."""
    padding = "x" * (MAX_FAULT_TEXT - 30)
    async with serving(send(400, error(f"{padding} {KEY} trailing words"))) as server, \
            stacked(server.url, max_attempts=1) as (engine, _):
        with pytest.raises(CallFailed) as failed:
            await call(engine, chat_request())
    assert KEY[:8] not in str(failed.value)
    assert len(str(failed.value.last)) <= MAX_FAULT_TEXT
    assert_never_shows(KEY, failed.value, log_lines, caplog)


async def test_the_completions_endpoint_scrubs_the_same_way(log_lines, caplog):
    async with serving(send(400, error(f"prompt rejected for {KEY}"))) as server, \
            stacked(server.url, max_attempts=2) as (engine, _):
        with pytest.raises(CallFailed) as failed:
            await call(engine, text_request())
    assert server.paths == ["/v1/completions"]
    assert "***" in str(failed.value)
    assert_never_shows(KEY, failed.value, log_lines, caplog)


async def test_a_password_in_the_base_url_is_refused_with_one_line_that_does_not_show_it():
    """`http://user:password@host/v1` cannot work beside a key (the client refuses to send both),
    and would put the password in every message naming the URL: refused before any request."""
    password = "pa55-w0rd-Gateway"
    async with serving(send(200, chat("never asked"))) as server:
        with pytest.raises(EngineConfigError) as refused:
            engine_at(server.url.replace("http://", f"http://gw:{password}@"))
    assert refused.value.exit_code == 2
    assert "user:password@" in str(refused.value) and "\n" not in str(refused.value)
    assert password not in shown(refused.value)
    assert server.hits == []
