"""Any OpenAI-compatible `/chat/completions` server (OpenAI, Ollama `/v1`, vLLM, llama.cpp,
LM Studio), streamed over httpx.

The request carries a system prompt with the organization's context and the chat history.
The answer is Server-Sent Events: `data: {...}` chunks with `choices[0].delta.content`,
`: comment` keep-alives, an `{"error": ...}` object when the server fails mid-stream, and
`data: [DONE]` at the end. Cancelling the consumer closes the upstream connection.

`list_models` asks the same server which models it serves (`GET /models`, answered as
`{"object": "list", "data": [{"id": ...}]}` by OpenAI, Ollama `/v1`, vLLM and llama.cpp).

With a data source in the context (events), the request also offers its `tools`. When the
model calls them (`delta.tool_calls`), the calls run in code, scoped to the organization, and
the conversation continues with their results (at most MAX_TOOL_ROUNDS times). A server that
refuses `tools` (many local servers answer 400, 422 or 500) is asked again without them: the
system prompt's summary then has to do.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any

import httpx

from chats.assistants.base import AssistantContext, AssistantError, Turn

ERROR_BODY_MAX_BYTES = 4096
# OpenRouter's list, the longest known, is about 1 MB with its descriptions.
MODEL_LIST_MAX_BYTES = 4 * 1024 * 1024
MAX_TOOL_ROUNDS = 3
# Refusals that say nothing about `tools` (key, URL/model, quota): never retried without them.
_NOT_ABOUT_TOOLS = {401, 403, 404, 429}


class _Refused(Exception):
    def __init__(self, status: int, body: bytes):
        self.status, self.body = status, body


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
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.api_key = api_key
        self.model = model
        # `read` bounds every wait for the next bytes: it is the idle timeout of the stream.
        self.timeout = httpx.Timeout(
            connect=connect_timeout, read=idle_timeout, write=connect_timeout, pool=connect_timeout
        )
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout

    def headers(self, *, accept: str) -> dict[str, str]:
        headers = {"Accept": accept}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def list_models(self) -> list[str]:
        """The ids of the models the server serves, in its order; AssistantError when it cannot
        say. Blocking, bounded by the connect timeout in every phase (a list is small and quick,
        and a person is waiting for it): call it off the event loop."""
        url = self.base_url + "/models"
        timeout = httpx.Timeout(self.connect_timeout)
        try:
            with httpx.Client(timeout=timeout) as client:
                with client.stream(
                    "GET", url, headers=self.headers(accept="application/json")
                ) as response:
                    body = b""
                    for part in response.iter_bytes():
                        body += part
                        if len(body) > MODEL_LIST_MAX_BYTES:
                            raise AssistantError(
                                f"The assistant server's model list at {url} is larger than "
                                f"{MODEL_LIST_MAX_BYTES // (1024 * 1024)} MB."
                            )
                    status = response.status_code
        except httpx.TimeoutException:
            raise AssistantError(
                f"The assistant server at {url} did not answer within {self.connect_timeout:g} s."
            ) from None
        except httpx.HTTPError as exc:
            raise AssistantError(
                f"Could not reach the assistant server at {url}: {exc or type(exc).__name__}"
            ) from None
        if status == 404:
            raise AssistantError(
                f"The assistant server has no model list at {url} (HTTP 404); "
                "check OPENAI_BASE_URL (it usually ends in /v1)."
            )
        if status != 200:
            raise self._http_error(status, body[:ERROR_BODY_MAX_BYTES])
        return _model_ids(url, body)

    def request_body(
        self,
        turns: Sequence[Turn],
        context: AssistantContext,
        *,
        system_prompt: str,
        tool_messages: Sequence[dict[str, Any]] = (),
        offer_tools: bool = False,
        last_round: bool = False,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "stream": True,
            "messages": [
                {"role": "system", "content": system_prompt},
                *({"role": turn.role, "content": turn.content} for turn in turns),
                *tool_messages,
            ],
        }
        if offer_tools and context.data is not None:
            body["tools"] = context.data.tool_schemas()
            if last_round:
                # The history holds tool calls, so the tools stay declared; the model must answer.
                body["tool_choice"] = "none"
        return body

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

    def _event_delta(self, data: str) -> dict[str, Any]:
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
            delta = payload["choices"][0]["delta"]
        except (KeyError, IndexError, TypeError):
            return {}  # usage chunks and the like carry no delta
        return delta if isinstance(delta, dict) else {}

    async def stream(self, turns: Sequence[Turn], context: AssistantContext) -> AsyncIterator[str]:
        headers = self.headers(accept="text/event-stream")
        tool_messages: list[dict[str, Any]] = []
        use_tools = context.data is not None
        rounds = 0
        # Once per reply, whatever the number of tool rounds.
        system_prompt = await context.system_prompt()
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                while True:
                    offer_tools = use_tools
                    last_round = rounds >= MAX_TOOL_ROUNDS
                    body = self.request_body(
                        turns,
                        context,
                        system_prompt=system_prompt,
                        tool_messages=tool_messages,
                        offer_tools=offer_tools,
                        last_round=last_round,
                    )
                    calls: dict[int, dict[str, Any]] = {}
                    said: list[str] = []
                    try:
                        # aclosing: a stop while a completion streams closes it at once.
                        async with aclosing(
                            self._completion(client, body, headers, calls)
                        ) as texts:
                            async for text in texts:
                                said.append(text)
                                yield text
                    except _Refused as refused:
                        if offer_tools and refused.status not in _NOT_ABOUT_TOOLS:
                            use_tools = False  # this server takes no tools: the summary alone
                            continue
                        raise self._http_error(refused.status, refused.body) from None
                    if not calls or context.data is None or last_round:
                        return
                    rounds += 1
                    tool_messages.extend(await self._run_tools(context, calls, "".join(said)))
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

    async def _completion(
        self,
        client: httpx.AsyncClient,
        body: dict[str, Any],
        headers: dict[str, str],
        calls: dict[int, dict[str, Any]],
    ) -> AsyncIterator[str]:
        """One streamed completion: yields its text, collects its tool calls into `calls`."""
        async with client.stream("POST", self.url, json=body, headers=headers) as response:
            if response.status_code != 200:
                error_body = b""
                async for part in response.aiter_bytes():
                    error_body += part
                    if len(error_body) >= ERROR_BODY_MAX_BYTES:
                        break
                raise _Refused(response.status_code, error_body[:ERROR_BODY_MAX_BYTES])
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
                delta = self._event_delta(data)
                _merge_tool_calls(calls, delta.get("tool_calls"))
                text = delta.get("content")
                if isinstance(text, str) and text:
                    yield text
            if "\n".join(data_lines).strip() == "[DONE]":
                return  # `[DONE]` as the very last line, without the blank line after it
            raise AssistantError(
                "The assistant server closed the stream before the reply was finished."
            )

    async def _run_tools(
        self, context: AssistantContext, calls: dict[int, dict[str, Any]], said: str
    ) -> list[dict[str, Any]]:
        """The assistant turn that asked for the calls, and one `tool` message per result."""
        assert context.data is not None
        ordered = [calls[index] for index in sorted(calls)]
        messages: list[dict[str, Any]] = [
            {"role": "assistant", "content": said or None, "tool_calls": ordered}
        ]
        for call in ordered:
            function = call["function"]
            try:
                arguments = json.loads(function["arguments"] or "{}")
            except ValueError:
                result = json.dumps({"error": "the arguments are not valid JSON"})
            else:
                result = await context.data.call(function["name"], arguments)
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        return messages


def _merge_tool_calls(calls: dict[int, dict[str, Any]], fragments: Any) -> None:
    """Assemble streamed tool calls: a call's id and name come first, its arguments in pieces."""
    if not isinstance(fragments, list):
        return
    for position, fragment in enumerate(fragments):
        if not isinstance(fragment, dict):
            continue
        index = fragment.get("index", position)
        call = calls.setdefault(
            index,
            {"id": f"call_{index}", "type": "function", "function": {"name": "", "arguments": ""}},
        )
        if fragment.get("id"):
            call["id"] = fragment["id"]
        function = fragment.get("function") or {}
        if function.get("name"):
            call["function"]["name"] = function["name"]
        if isinstance(function.get("arguments"), str):
            call["function"]["arguments"] += function["arguments"]


def _model_ids(url: str, body: bytes) -> list[str]:
    """The ids in an OpenAI-format list, each once."""
    try:
        payload = json.loads(body)
    except ValueError:
        sample = body.decode("utf-8", "replace").strip()[:100]
        raise AssistantError(
            f"The assistant server's model list at {url} is not JSON: {sample!r}"
        ) from None
    entries = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        raise AssistantError(
            f"The assistant server's model list at {url} is not in the OpenAI format "
            '({"data": [{"id": ...}]}).'
        )
    ids: dict[str, None] = {}
    for entry in entries:
        model = entry.get("id") if isinstance(entry, dict) else None
        if isinstance(model, str) and model:
            ids[model] = None
    return list(ids)
