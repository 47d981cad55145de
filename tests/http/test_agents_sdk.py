"""One agent turn with one tool through the openai-agents SDK's default model
(the Responses API), against the gateway on loopback."""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAI

from .conftest import RunningGateway

agents = pytest.importorskip("agents")


def test_an_agent_calls_a_tool_and_answers(gateway: RunningGateway, fake: FakeOpenAI) -> None:
    calls: list[str] = []

    @agents.function_tool
    def get_weather() -> str:
        """The weather here."""
        calls.append("called")
        return "sunny"

    client = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    model = agents.OpenAIResponsesModel(model="upstream", openai_client=client)
    agent = agents.Agent(
        name="weather", instructions="Use tools.", tools=[get_weather], model=model
    )
    config = agents.RunConfig(tracing_disabled=True)
    result = asyncio.run(agents.Runner.run(agent, "call_tool for Paris", run_config=config))
    assert calls == ["called"]  # the fake upstream calls the first tool, with {}
    assert result.final_output == "echo: call_tool for Paris"
    sent = fake.requests[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": "Use tools."}
    assert sent[-1]["role"] == "tool" and sent[-1]["content"] == "sunny"
