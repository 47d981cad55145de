"""Upstream paths stay where the policy put them: a model (or Azure deployment)
name is one encoded path segment, and a name that would leave it is a 400
before any upstream call."""

from __future__ import annotations

import httpx2 as httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from turnout.contract.provider import ProviderCall, ProviderSettings
from turnout.errors import FailureClass, ProviderError
from turnout.plugins.providers.azure import AzureProvider
from turnout.plugins.providers.gemini import GeminiProvider
from turnout.provider_api import path_segment
from turnout.wire.chat import ChatRequest

from tests.conftest import user

ESCAPES = [
    "models/../../admin",
    "../admin",
    "..",
    "a/../b",
    "m?alt=json",
    "m#x",
    "m\r\nX-Evil: 1",
    "m%2F..%2Fx",
]


def gemini() -> GeminiProvider:
    return GeminiProvider(ProviderSettings(name="g", type="gemini", base_url="https://gemini.test"))


def azure() -> AzureProvider:
    return AzureProvider(
        ProviderSettings(name="a", type="azure", base_url="https://res.openai.azure.com")
    )


async def attempt(provider, model: str, *, stream: bool) -> ProviderError:
    sent: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as client:
        call = ProviderCall(ChatRequest.model_validate(user("hi", model="m")), model, "k" * 20, client, 5)
        with pytest.raises(ProviderError) as caught:
            if stream:
                async for _ in provider.stream(call):
                    pass
            else:
                await provider.chat(call)
    assert sent == []  # refused before anything went upstream
    return caught.value


@pytest.mark.parametrize("model", ESCAPES)
@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
@pytest.mark.parametrize("provider", [gemini, azure], ids=["gemini", "azure"])
async def test_names_that_leave_the_path_are_bad_requests(provider, model, stream):
    error = await attempt(provider(), model, stream=stream)
    assert error.failure is FailureClass.BAD_REQUEST
    assert "cannot be sent in a URL path" in error.message


def url_of(provider, model: str) -> str:
    call = ProviderCall(ChatRequest.model_validate(user("hi", model="m")), model, None, client_factory=object)  # type: ignore[arg-type]
    return provider.request_url(call)


def test_ordinary_names_stay_in_their_segment():
    assert url_of(gemini(), "gemini-2.5-flash").endswith(
        "/v1beta/models/gemini-2.5-flash:generateContent"
    )
    assert url_of(gemini(), "tunedModels/my-model").endswith(
        "/v1beta/tunedModels/my-model:generateContent"
    )
    assert "/openai/deployments/my%20gpt/chat/completions?" in url_of(azure(), "my gpt")


@given(st.text(min_size=1, max_size=30))
def test_an_encoded_segment_never_holds_a_separator(name):
    try:
        segment = path_segment(name)
    except ProviderError as exc:
        assert exc.failure is FailureClass.BAD_REQUEST
        return
    assert not set("/?#\r\n") & set(segment)
    assert segment not in (".", "..")
