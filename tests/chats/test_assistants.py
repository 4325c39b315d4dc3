"""The backends on their own: builtin answers, and the OpenAI protocol against a real server."""

from __future__ import annotations

import asyncio
import time

import pytest

from chats.assistants import AssistantContext, AssistantError, FactGroup, Member, Turn
from chats.assistants.builtin import BuiltinBackend, builtin_answer
from chats.assistants.openai_compatible import OpenAICompatibleBackend
from tests.chats.facts import fixed_facts
from tests.chats.fake_openai import chunk, reply
from tests.conftest import free_port

CONTEXT = AssistantContext(
    organization_name="Alice Co",
    user_name="alice",
    members=(Member("alice", "owner"), Member("bob", "member")),
    chat_count=3,
)


async def collect(stream) -> list[str]:
    return [piece async for piece in stream]


def openai_backend(
    fake, *, idle_timeout: float = 5.0, api_key: str = "sk-test"
) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(
        base_url=fake.base_url,
        api_key=api_key,
        model="test-model",
        connect_timeout=2.0,
        idle_timeout=idle_timeout,
    )


# --- builtin -------------------------------------------------------------------------------


async def test_builtin_lists_the_members_with_their_roles():
    assert await builtin_answer("Who is on the team?", CONTEXT) == (
        "Alice Co has 2 members:\n\n- **alice** (owner)\n- **bob** (member)"
    )


async def test_builtin_counts_the_users_chats():
    assert (
        await builtin_answer("How many chats do I have?", CONTEXT)
        == "You have 3 chats in Alice Co."
    )


async def test_builtin_answers_several_questions_at_once():
    answer = await builtin_answer("Which organization is this and how many chats?", CONTEXT)
    assert answer == "You have 3 chats in Alice Co.\n\nYou are asking about **Alice Co**."


async def test_builtin_says_plainly_it_has_no_camera_data():
    answer = await builtin_answer("What did the cameras see last night?", CONTEXT)
    assert answer == "I have no camera data for Alice Co yet, so I cannot say what the cameras saw."


async def test_builtin_answers_from_facts_other_apps_provide():
    context = AssistantContext(
        organization_name="Alice Co",
        user_name="alice",
        members=(),
        chat_count=1,
        facts=(fixed_facts("cameras", ("camera",), ("Front door: online", "Yard: offline")),),
    )
    assert await builtin_answer("Which cameras are there?", context) == (
        "Cameras in Alice Co:\n\n- Front door: online\n- Yard: offline"
    )


async def test_builtin_says_what_it_can_answer_when_it_cannot():
    answer = await builtin_answer("Write me a poem about the sea", CONTEXT)
    assert answer.startswith("I can't answer that from Alice Co's data. I answer from")
    assert "- who the members are and their roles" in answer
    assert "Camera data is not available to me yet." in answer


async def test_builtin_is_deterministic():
    assert await builtin_answer("hello", CONTEXT) == await builtin_answer("hello", CONTEXT)


async def test_builtin_streams_small_word_pieces_that_add_up_to_the_answer():
    pieces = await collect(BuiltinBackend().stream([Turn("user", "Who is on the team?")], CONTEXT))
    assert pieces[:3] == ["Alice", " Co", " has"]
    assert "".join(pieces) == await builtin_answer("Who is on the team?", CONTEXT)


async def test_builtin_pauses_between_pieces():
    started = time.monotonic()
    pieces = await collect(BuiltinBackend(delay_seconds=0.02).stream([Turn("user", "hi")], CONTEXT))
    assert time.monotonic() - started >= 0.02 * (len(pieces) - 1)


# --- openai-compatible, against a real HTTP server on 127.0.0.1 ------------------------------


async def test_openai_streams_the_deltas(fake_openai):
    fake_openai.script = reply("Hello", ", ", "world")
    pieces = await collect(openai_backend(fake_openai).stream([Turn("user", "hi")], CONTEXT))
    assert pieces == ["Hello", ", ", "world"]


async def test_openai_sends_the_system_prompt_and_the_history(fake_openai):
    history = [
        Turn("user", "Who is on the team?"),
        Turn("assistant", "Alice and Bob."),
        Turn("user", "And their roles?"),
    ]
    await collect(openai_backend(fake_openai).stream(history, CONTEXT))
    [request] = fake_openai.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    body = request["body"]
    assert body["model"] == "test-model"
    assert body["stream"] is True
    system, *turns = body["messages"]
    assert system["role"] == "system"
    assert "Alice Co" in system["content"]
    assert "- bob: member" in system["content"]
    assert turns == [
        {"role": "user", "content": "Who is on the team?"},
        {"role": "assistant", "content": "Alice and Bob."},
        {"role": "user", "content": "And their roles?"},
    ]


async def test_openai_sends_no_authorization_without_a_key(fake_openai):
    await collect(openai_backend(fake_openai, api_key="").stream([Turn("user", "hi")], CONTEXT))
    assert "Authorization" not in fake_openai.requests[0]["headers"]


async def test_openai_ignores_keep_alive_comments_and_other_fields(fake_openai):
    fake_openai.script = [
        ("raw", ": keep-alive\n\n"),
        ("raw", "event: message\nid: 1\n"),
        chunk("A"),
        ("raw", ":\n\n"),
        chunk("B"),
        ("raw", "data: [DONE]\n\n"),
    ]
    assert await collect(openai_backend(fake_openai).stream([Turn("user", "hi")], CONTEXT)) == [
        "A",
        "B",
    ]


async def test_openai_reads_an_event_split_across_network_writes(fake_openai):
    fake_openai.script = [
        ("raw", 'data: {"choices": [{"delta": {"con'),
        ("sleep", 0.05),
        ("raw", 'tent": "split"}}]}\n'),
        ("raw", "\ndata: [DONE]\n\n"),
    ]
    assert await collect(openai_backend(fake_openai).stream([Turn("user", "hi")], CONTEXT)) == [
        "split"
    ]


async def test_openai_error_object_mid_stream_raises_with_its_message(fake_openai):
    fake_openai.script = [chunk("Partial"), ("data", {"error": {"message": "model overloaded"}})]
    received = []
    with pytest.raises(AssistantError, match="reported an error mid-reply: model overloaded"):
        async for piece in openai_backend(fake_openai).stream([Turn("user", "hi")], CONTEXT):
            received.append(piece)
    assert received == ["Partial"]


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, r"refused the API key \(HTTP 401\); check OPENAI_API_KEY: bad key"),
        (
            404,
            r"HTTP 404 .* model 'test-model'; check OPENAI_BASE_URL and ASSISTANT_MODEL: bad key",
        ),
        (429, r"rate-limiting us or out of quota \(HTTP 429\)"),
        (500, r"The assistant server failed \(HTTP 500\): bad key"),
    ],
)
async def test_openai_http_errors_become_clear_messages(fake_openai, status, message):
    fake_openai.status = status
    fake_openai.error_body = {"error": {"message": "bad key", "type": "invalid_request_error"}}
    with pytest.raises(AssistantError, match=message):
        await collect(openai_backend(fake_openai).stream([Turn("user", "hi")], CONTEXT))


async def test_openai_gives_up_after_the_idle_timeout(fake_openai):
    fake_openai.script = [chunk("Slow"), ("sleep", 1.5), chunk("never")]
    started = time.monotonic()
    with pytest.raises(AssistantError, match="sent nothing for 0.3 s"):
        await collect(
            openai_backend(fake_openai, idle_timeout=0.3).stream([Turn("user", "hi")], CONTEXT)
        )
    assert time.monotonic() - started < 1.4


async def test_openai_stream_that_ends_without_done_is_an_error(fake_openai):
    fake_openai.script = [chunk("cut"), ("close",)]
    with pytest.raises(
        AssistantError, match="closed the stream before the reply was finished|connection"
    ):
        await collect(openai_backend(fake_openai).stream([Turn("user", "hi")], CONTEXT))


async def test_openai_unreachable_server_is_a_clear_error():
    backend = OpenAICompatibleBackend(
        base_url=f"http://127.0.0.1:{free_port()}/v1",
        api_key="",
        model="m",
        connect_timeout=2.0,
        idle_timeout=2.0,
    )
    with pytest.raises(AssistantError, match="Could not reach the assistant server"):
        await collect(backend.stream([Turn("user", "hi")], CONTEXT))


async def test_openai_cancelling_closes_the_upstream_connection(fake_openai):
    fake_openai.script = [chunk("First"), ("until_disconnect", 10)]
    first = asyncio.Event()

    async def consume():
        async for _ in openai_backend(fake_openai).stream([Turn("user", "hi")], CONTEXT):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(fake_openai.disconnected.wait, 5)


def context_with_counted_facts(reads: list[int]) -> AssistantContext:
    """A context whose one fact group notes each time its lines are read."""

    async def read_lines() -> tuple[str, ...]:
        reads.append(1)
        return ("Front door: online",)

    return AssistantContext(
        organization_name="Alice Co",
        user_name="alice",
        members=(Member("alice", "owner"),),
        chat_count=1,
        facts=(FactGroup("session data", (), read_lines),),
    )


async def test_the_builtin_backend_never_reads_facts_nobody_asked_about():
    reads: list[int] = []
    context = context_with_counted_facts(reads)
    answer = "".join(await collect(BuiltinBackend().stream([Turn("user", "help")], context)))
    assert "about session data" in answer  # its topic is listed among the abilities
    assert reads == []


async def test_the_openai_backend_reads_the_facts_once_per_reply(fake_openai):
    reads: list[int] = []
    context = context_with_counted_facts(reads)
    fake_openai.script = reply("Fine")
    await collect(openai_backend(fake_openai).stream([Turn("user", "hi")], context))
    assert reads == [1]
    system = fake_openai.requests[0]["body"]["messages"][0]["content"]
    assert "- Front door: online" in system
