"""The OpenAI-request toolkit every translation shares: one reading of data:
URLs, tools and tool calls, so vendors agree on what a request says."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from turnout.errors import FailureClass, ProviderError
from turnout.plugins.providers import anthropic_wire, bedrock_wire, gemini_wire
from turnout.provider_api import TranslationError, data_url, function_tool, tool_choice
from turnout.wire.chat import ChatRequest

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def image_request(url: str) -> ChatRequest:
    return ChatRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
            ],
        }
    )


@pytest.mark.parametrize(
    "url",
    [
        f"data:image/png;base64,{PNG}",
        f"data:image/PNG;base64,{PNG}",
        f"data:image/png;name=dot.png;base64,{PNG}",  # Bedrock refused this one before
    ],
)
def test_every_vendor_takes_the_same_image_data_urls(url):
    anthropic = anthropic_wire.messages_body(image_request(url), "claude-x", max_tokens=10)
    block = anthropic["messages"][0]["content"][0]
    assert block["source"] == {"type": "base64", "media_type": "image/png", "data": PNG}
    gemini = gemini_wire.request_body(image_request(url), "gemini-2.0-flash")
    assert gemini["contents"][0]["parts"][0]["inlineData"] == {"mimeType": "image/png", "data": PNG}
    bedrock = bedrock_wire.to_converse(image_request(url), model="amazon.nova-lite-v1:0")
    image = bedrock["messages"][0]["content"][0]["image"]
    assert image == {"format": "png", "source": {"bytes": PNG}}


@pytest.mark.parametrize(
    ("url", "words"),
    [("data:image/png,notbase64", "must be base64"), (f"data:;base64,{PNG}", "media type")],
)
def test_every_vendor_refuses_the_same_bad_data_urls(url, words):
    for translate in (
        lambda r: anthropic_wire.messages_body(r, "claude-x", max_tokens=10),
        lambda r: gemini_wire.request_body(r, "gemini-2.0-flash"),
        lambda r: bedrock_wire.to_converse(r, model="amazon.nova-lite-v1:0"),
    ):
        with pytest.raises(ProviderError, match=words) as caught:
            translate(image_request(url))
        assert caught.value.failure is FailureClass.BAD_REQUEST


@given(
    media=st.from_regex(r"[a-z]{1,8}/[a-z0-9.+-]{1,12}", fullmatch=True),
    params=st.lists(st.from_regex(r"[a-z]{1,6}=[a-z0-9]{1,6}", fullmatch=True), max_size=3),
    data=st.from_regex(r"[A-Za-z0-9+/]{0,40}={0,2}", fullmatch=True),
)
def test_data_urls_give_back_their_media_type_and_data(media, params, data):
    url = "data:" + media + "".join(";" + p for p in params) + ";base64," + data
    parsed = data_url(url, "here")
    assert parsed is not None and (parsed.media_type, parsed.data) == (media, data)


def test_other_urls_are_not_data_urls():
    assert data_url("https://example.com/a.png", "here") is None


def test_translation_errors_are_bad_requests_naming_the_place():
    with pytest.raises(TranslationError, match=r"tools\[1\]") as caught:
        function_tool({"type": "retrieval"}, 1)
    assert caught.value.failure is FailureClass.BAD_REQUEST
    tools = [function_tool({"type": "function", "function": {"name": "f"}}, 0)]
    assert tool_choice({"type": "function", "function": {"name": "f"}}, tools).names == ("f",)
    with pytest.raises(TranslationError, match="not in tools"):
        tool_choice({"type": "function", "function": {"name": "g"}}, tools)
