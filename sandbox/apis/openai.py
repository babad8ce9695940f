"""Fake OpenAI Chat Completions (POST /chat/completions): deterministic, plausible short text
built from the prompt, with a usage block, per the openai Python SDK's shapes.

A prompt asking for an "opening sentence" gets one sentence. Tests can script the next replies
verbatim (e.g. one with an invented link) with POST /_sandbox/replies {"replies": [...]}; the
script is cleared whenever the sandbox's fault config is replaced."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.apis.responses import SandboxState, bearer, json_response, read_json

_OPENERS = (
    "I came across {company} and loved what you are building in {city}.",
    "{company} stood out while I was looking at {industry} businesses in {city}.",
    "Your reviews at {company} say a lot about the experience you give clients.",
    "I noticed {company} still takes most bookings by phone.",
)
_BODIES = (
    "We help {industry} teams fill quiet slots with online booking and automatic reminders.",
    "Owners like you use us to cut no-shows and free the front desk from phone tag.",
    "A short setup gets you a booking page, reminders and reviews in one place.",
)
_CLOSERS = (
    "Would a 15-minute call next week be useful?",
    "Open to a quick look at how it would work for you?",
    "Happy to send a two-minute video if that is easier.",
)
_QUOTED = re.compile(r"(?:company|business|name)\s*[:=]\s*\"?([^\n\",;]+)", re.IGNORECASE)
_CITY = re.compile(r"(?:city|location)\s*[:=]\s*\"?([^\n\",;]+)", re.IGNORECASE)
_INDUSTRY = re.compile(r"industry\s*[:=]\s*\"?([^\n\",;]+)", re.IGNORECASE)
_TOOL = re.compile(r"booking tool\s*[:=]\s*\"?([^\n\",;]+)", re.IGNORECASE)
_TOOL_OPENERS = (
    "I noticed {company} takes bookings through {tool}, and had a thought about that.",
    "Seeing {company} on {tool} made me curious how it works for a {industry} team in {city}.",
)


def _err(status: int, message: str, type_: str, code: str | None,
         param: str | None = None) -> Response:
    request_id = f"req_{hashlib.md5(message.encode()).hexdigest()}"
    return json_response({"error": {"message": message, "type": type_, "param": param,
                                    "code": code}}, status, headers={"x-request-id": request_id})


def error_response(status: int, retry_after: float | None = 1.0) -> Response:
    if status == 429:
        resp = _err(429, "Rate limit reached for gpt-4o-mini in organization org-sandbox on "
                    "requests per min (RPM). Please try again in 1s.", "requests",
                    "rate_limit_exceeded")
        if retry_after is not None:
            resp.headers["retry-after-ms"] = str(int(retry_after * 1000))
        return resp
    if status == 401:
        return _err(401, "Incorrect API key provided. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.", "invalid_request_error",
                    "invalid_api_key")
    if status >= 500:
        return _err(status, "The server had an error while processing your request. Sorry "
                    "about that!", "server_error", None)
    return _err(status, "Invalid request.", "invalid_request_error", None)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _tokens(text: str) -> int:
    # Roughly what a BPE tokenizer gives for English: ~0.75 words per token.
    return max(1, round(len(text.split()) * 4 / 3))


def compose(prompt: str, json_mode: bool) -> str:
    """The deterministic reply to a prompt."""
    h = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
    facts = {
        "company": (m.group(1).strip() if (m := _QUOTED.search(prompt)) else "your business"),
        "city": (m.group(1).strip() if (m := _CITY.search(prompt)) else "town"),
        "industry": (m.group(1).strip() if (m := _INDUSTRY.search(prompt)) else "local"),
    }
    if "opening sentence" in prompt.lower():
        if m := _TOOL.search(prompt):
            facts["tool"] = m.group(1).strip()
            return _TOOL_OPENERS[h % len(_TOOL_OPENERS)].format(**facts)
        return _OPENERS[h % len(_OPENERS)].format(**facts)
    parts = [_OPENERS[h % len(_OPENERS)], _BODIES[(h >> 8) % len(_BODIES)],
             _CLOSERS[(h >> 16) % len(_CLOSERS)]]
    text = " ".join(p.format(**facts) for p in parts)
    if json_mode:
        return orjson.dumps({"subject": f"Quick idea for {facts['company']}",
                             "body": text}).decode()
    return text


def routes(state: SandboxState) -> list[Route]:
    scripted: list[str] = []
    state.faults.on_replace.append(scripted.clear)

    async def set_replies(request: Request) -> Response:
        body = await read_json(request)
        replies = body.get("replies") if body else None
        if not isinstance(replies, list) or not all(isinstance(r, str) for r in replies):
            return json_response({"error": "expected {\"replies\": [\"text\", ...]}"}, 400)
        scripted[:] = replies
        return json_response({"ok": True, "replies": len(scripted)})

    async def completions(request: Request) -> Response:
        return await state.faults.run("openai", request, _completions, error_response)

    async def _completions(request: Request) -> Response:
        key = bearer(request)
        if not key:
            return _err(401, "You didn't provide an API key. You need to provide your API key "
                        "in an Authorization header using Bearer auth.",
                        "invalid_request_error", None)
        if key.lower().startswith("invalid"):
            return error_response(401)
        body = await read_json(request)
        if body is None:
            return _err(400, "We could not parse the JSON body of your request.",
                        "invalid_request_error", None)
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            return _err(400, "you must provide a model parameter", "invalid_request_error",
                        None, "model")
        if not isinstance(messages, list) or not messages:
            return _err(400, "Missing required parameter: 'messages'.", "invalid_request_error",
                        "missing_required_parameter", "messages")
        if body.get("stream"):
            return _err(400, "Streaming is not supported by the sandbox.",
                        "invalid_request_error", "unsupported_value", "stream")
        prompt = "\n".join(_text_of(m.get("content")) for m in messages if isinstance(m, dict))
        fmt = body.get("response_format")
        json_mode = isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")
        text = scripted.pop(0) if scripted else compose(prompt, json_mode)
        prompt_tokens, completion_tokens = _tokens(prompt) + 4 * len(messages), _tokens(text)
        digest = hashlib.sha256(prompt.encode()).hexdigest()
        payload = {
            "id": f"chatcmpl-{digest[:24]}", "object": "chat.completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text,
                                                 "refusal": None, "annotations": []},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                    "accepted_prediction_tokens": 0,
                                                    "rejected_prediction_tokens": 0}},
            "service_tier": "default", "system_fingerprint": "fp_sandbox",
        }
        m, _, _ = state.faults.usage.hit("openai")
        headers = {
            "x-request-id": f"req_{digest[:32]}", "openai-processing-ms": "1",
            "openai-version": "2020-10-01", "openai-organization": "org-sandbox",
            "x-ratelimit-limit-requests": "5000", "x-ratelimit-limit-tokens": "800000",
            "x-ratelimit-remaining-requests": str(max(0, 5000 - m)),
            "x-ratelimit-remaining-tokens": "799000", "x-ratelimit-reset-requests": "12ms",
            "x-ratelimit-reset-tokens": "4ms",
        }
        return json_response(payload, headers=headers)

    return [Route("/chat/completions", completions, methods=["POST"]),
            Route("/_sandbox/replies", set_replies, methods=["POST"])]
