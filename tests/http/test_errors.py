"""Every error class reaches the official openai SDK as the matching exception."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAI, Fault

from .conftest import RunningGateway

HELLO = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("model", "exception", "status", "code"),
    [
        ("no-such-route", openai.NotFoundError, 404, "model_not_found"),
        ("limited", openai.RateLimitError, 429, "rate_limited"),
        ("broken", openai.InternalServerError, 502, "server_error"),
        ("overloaded", openai.InternalServerError, 503, "overloaded"),
        ("stuck", openai.InternalServerError, 504, "timeout"),
    ],
)
def test_routing_and_upstream_failures(
    client: openai.OpenAI,
    model: str,
    exception: type[openai.APIStatusError],
    status: int,
    code: str,
) -> None:
    with pytest.raises(exception) as caught:
        client.chat.completions.create(model=model, messages=HELLO)
    error = caught.value
    assert error.status_code == status
    assert error.code == code
    body = error.response.json()
    assert body["status_code"] == status
    assert set(body["error"]) == {"type", "code", "message", "param"}
    assert error.response.headers["x-request-id"]


def test_all_attempts_failed_lists_them(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="overloaded", messages=HELLO)
    body = caught.value.response.json()
    assert [a["model"] for a in body["extra_fields"]["attempts"]] == ["a", "b"]
    assert caught.value.response.headers["x-turnout-attempts"] == "2"
    assert "all 2 attempts failed" in body["error"]["message"]


def test_streaming_failure_before_the_first_chunk_is_an_http_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="limited", messages=HELLO, stream=True)


def test_an_upstream_400_is_returned_as_400(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.script(Fault.status(400))
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="upstream", messages=HELLO)
    assert caught.value.status_code == 400
    assert len(fake.requests) == 1


NO_SUCH_MODEL = {
    "error": {
        "message": "The model `gpt-nope` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }
}


def test_a_target_whose_upstream_lacks_the_model_falls_back(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    fake.script(Fault.status(404, body=NO_SUCH_MODEL))
    raw = client.chat.completions.with_raw_response.create(model="misnamed", messages=HELLO)
    reply = raw.parse()
    attempts = reply.model_extra["extra_fields"]["attempts"]
    assert [(a["provider"], a["outcome"]) for a in attempts] == [
        ("fake", "not_found"),
        ("mock", "ok"),
    ]
    assert raw.headers["x-turnout-provider"] == "mock"
    assert len(fake.requests) == 1  # not retried: a missing model stays missing


def test_an_upstream_404_with_no_fallback_is_a_404(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.script(Fault.status(404, body=NO_SUCH_MODEL))
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="upstream", messages=HELLO)
    assert caught.value.code == "model_not_found"
    assert "gpt-nope" in caught.value.message


def test_invalid_field_is_422(client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(model="smart", messages=HELLO, temperature=5)
    assert caught.value.status_code == 422
    assert caught.value.param == "temperature"


def test_n_out_of_range_is_422(client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="smart", messages=HELLO, n=0)


def test_empty_messages_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="smart", messages=[])
    assert "messages" in caught.value.message


def test_too_large_body_is_413(client: openai.OpenAI) -> None:
    huge = [{"role": "user", "content": "x" * 100_000}]
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="smart", messages=huge)
    assert caught.value.status_code == 413
    assert caught.value.code == "request_too_large"


def test_stream_interrupted_midway_ends_with_an_error_event(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="midway", messages=[{"role": "user", "content": "one two three four"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert received, "the first chunks arrive before the error"
    assert caught.value.code == "stream_interrupted"


def test_stream_interrupted_midway_has_no_done(gateway: RunningGateway) -> None:
    body = {"model": "midway", "stream": True, "messages": [{"role": "user", "content": "a b c d"}]}
    response = httpx.post(gateway.url + "/v1/chat/completions", json=body)
    assert response.status_code == 200
    events = [e for e in response.text.split("\n\n") if e]
    assert "[DONE]" not in response.text
    assert events[-1].startswith("event: error\ndata: ")
    error = json.loads(events[-1].split("data: ", 1)[1])
    assert error["status_code"] == 502
    assert error["error"]["type"] == "api_error"
    assert error["extra_fields"]["route"] == "midway"
