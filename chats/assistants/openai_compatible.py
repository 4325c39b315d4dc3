"""Any OpenAI-compatible `/chat/completions` server (OpenAI, Ollama `/v1`, vLLM, llama.cpp,
LM Studio), streamed over httpx.

The request carries a system prompt with the organization's context and the chat history.
The answer is Server-Sent Events: `data: {...}` chunks with `choices[0].delta.content`,
`: comment` keep-alives, an `{"error": ...}` object when the server fails mid-stream, and
`data: [DONE]` at the end. Cancelling the consumer closes the upstream connection.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from chats.assistants.base import AssistantContext, AssistantError, Turn

ERROR_BODY_MAX_BYTES = 4096


def _error_detail(payload: Any) -> str:
    """The human part of an error object: `{"error": {"message": ...}}` or `{"error": "..."}`."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        error = error.get("message") or error.get("type") or json.dumps(error)
    return str(error or "")[:300]


class OpenAICompatibleBackend:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        connect_timeout: float,
        idle_timeout: float,
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = api_key
        self.model = model
        # `read` bounds every wait for the next bytes: it is the idle timeout of the stream.
        self.timeout = httpx.Timeout(
            connect=connect_timeout, read=idle_timeout, write=connect_timeout, pool=connect_timeout
        )
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout

    def request_body(self, turns: Sequence[Turn], context: AssistantContext) -> dict[str, Any]:
        return {
            "model": self.model,
            "stream": True,
            "messages": [
                {"role": "system", "content": context.as_system_prompt()},
                *({"role": turn.role, "content": turn.content} for turn in turns),
            ],
        }

    def _http_error(self, status: int, body: bytes) -> AssistantError:
        try:
            detail = _error_detail(json.loads(body))
        except ValueError:
            detail = body.decode("utf-8", "replace").strip()[:300]
        suffix = f": {detail}" if detail else "."
        if status in (401, 403):
            message = (
                f"The assistant server refused the API key (HTTP {status}); check OPENAI_API_KEY"
            )
        elif status == 404:
            message = (
                f"The assistant server answered HTTP 404 for {self.url} with model "
                f"{self.model!r}; check OPENAI_BASE_URL and ASSISTANT_MODEL"
            )
        elif status == 429:
            message = "The assistant server is rate-limiting us or out of quota (HTTP 429); try again later"
        elif status >= 500:
            message = f"The assistant server failed (HTTP {status})"
        else:
            message = f"The assistant server answered HTTP {status}"
        return AssistantError(message + suffix)

    def _event_text(self, data: str) -> str:
        try:
            payload = json.loads(data)
        except ValueError:
            raise AssistantError(
                f"The assistant server sent an unreadable event: {data[:200]!r}"
            ) from None
        if isinstance(payload, dict) and "error" in payload:
            raise AssistantError(
                f"The assistant server reported an error mid-reply: {_error_detail(payload)}"
            )
        try:
            content = payload["choices"][0]["delta"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            # Role-only first chunks and usage chunks carry no text.
            return ""
        return content if isinstance(content, str) else ""

    async def stream(self, turns: Sequence[Turn], context: AssistantContext) -> AsyncIterator[str]:
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            async with (
                httpx.AsyncClient(timeout=self.timeout) as client,
                client.stream(
                    "POST", self.url, json=self.request_body(turns, context), headers=headers
                ) as response,
            ):
                if response.status_code != 200:
                    body = b""
                    async for part in response.aiter_bytes():
                        body += part
                        if len(body) >= ERROR_BODY_MAX_BYTES:
                            break
                    raise self._http_error(response.status_code, body[:ERROR_BODY_MAX_BYTES])
                data_lines: list[str] = []
                async for line in response.aiter_lines():
                    if line.startswith(":"):
                        continue  # keep-alive comment
                    if line.startswith("data:"):
                        data_lines.append(line[5:].removeprefix(" "))
                        continue
                    if line or not data_lines:
                        continue  # `event:`/`id:` fields, or a blank line with nothing pending
                    data, data_lines = "\n".join(data_lines), []
                    if data.strip() == "[DONE]":
                        return
                    text = self._event_text(data)
                    if text:
                        yield text
                if "\n".join(data_lines).strip() == "[DONE]":
                    return  # `[DONE]` as the very last line, without the blank line after it
                raise AssistantError(
                    "The assistant server closed the stream before the reply was finished."
                )
        except httpx.ConnectTimeout:
            raise AssistantError(
                f"Could not connect to the assistant server at {self.url} within "
                f"{self.connect_timeout:g} s."
            ) from None
        except httpx.ReadTimeout:
            raise AssistantError(
                f"The assistant server sent nothing for {self.idle_timeout:g} s; gave up waiting."
            ) from None
        except httpx.ConnectError as exc:
            raise AssistantError(
                f"Could not reach the assistant server at {self.url}: {exc}"
            ) from None
        except httpx.HTTPError as exc:
            raise AssistantError(
                f"The connection to the assistant server failed: {exc or type(exc).__name__}"
            ) from None
