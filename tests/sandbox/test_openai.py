"""Fake OpenAI chat completions through the real openai SDK over HTTP."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import Sandbox

PROMPT = "Write a one-line opener.\ncompany: Bella Salon\ncity: Austin\nindustry: salon"


def test_chat_completion_is_deterministic_and_reports_usage(sandbox_clean: Sandbox) -> None:
    client = openai.OpenAI(base_url=sandbox_clean.api("openai"), api_key="sk-sandbox",
                           max_retries=0)
    answers = [client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]) for _ in range(2)]
    text = answers[0].choices[0].message.content or ""
    assert text == answers[1].choices[0].message.content
    assert "Bella Salon" in text and answers[0].choices[0].finish_reason == "stop"
    usage = answers[0].usage
    assert usage is not None and usage.total_tokens == usage.prompt_tokens + \
        usage.completion_tokens > 0


def test_bad_key_raises_the_sdk_authentication_error(sandbox_clean: Sandbox) -> None:
    client = openai.OpenAI(base_url=sandbox_clean.api("openai"), api_key="invalid-key",
                           max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "invalid_api_key"


def test_opening_sentence_prompt_gets_one_sentence_naming_the_booking_tool(
    sandbox_clean: Sandbox,
) -> None:
    client = openai.OpenAI(base_url=sandbox_clean.api("openai"), api_key="sk-sandbox",
                           max_retries=0)
    prompt = ("Write the opening sentence for this business.\ncompany: Bella Salon\n"
              "industry: salon\ncity: Austin\nbooking tool: Fresha")
    answer = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}])
    text = answer.choices[0].message.content or ""
    assert "Bella Salon" in text and "Fresha" in text and text.count(".") == 1


def test_scripted_replies_are_returned_verbatim_once_then_cleared_by_set_faults(
    sandbox_clean: Sandbox,
) -> None:
    import httpx

    url = sandbox_clean.api("openai")
    httpx.post(f"{url}/_sandbox/replies", json={"replies": ["one", "two"]},
               timeout=5).raise_for_status()
    client = openai.OpenAI(base_url=url, api_key="sk-sandbox", max_retries=0)

    def ask() -> str:
        answer = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": PROMPT}])
        return answer.choices[0].message.content or ""

    assert ask() == "one"
    sandbox_clean.set_faults({})
    assert ask() not in ("one", "two")
    assert httpx.post(f"{url}/_sandbox/replies", json={"replies": [1]}, timeout=5
                      ).status_code == 400
