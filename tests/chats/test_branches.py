"""Regenerate a reply, edit a prompt, page through the branches: through the real ASGI app,
with the same SSE as a new prompt."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from chats.assistants import Turn
from chats.branches import chat_branch, chat_turns_before
from chats.models import Chat, Message
from chats.services import chat_create, message_finish, message_send
from tests.chats.asgi_http import request, runs_finished

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fast_builtin(settings):
    settings.ASSISTANT_BUILTIN_DELAY_MS = 0
    settings.ASSISTANT_BACKEND = "builtin"


@pytest.fixture
def chat(alice, organization):
    return chat_create(user=alice, organization=organization)


@pytest.fixture
def token(alice_api):
    return alice_api.raw_token


async def _ask(chat, token, prompt):
    stream = await request(
        "POST", f"/api/v1/chats/{chat.pk}/messages", token=token, body={"prompt": prompt}
    )
    await stream.read_all()
    await runs_finished()
    return int(stream.headers["x-message-id"])


async def _messages(chat, token, query=""):
    listing = await request("GET", f"/api/v1/chats/{chat.pk}/messages{query}", token=token)
    await listing.read_all()
    return listing.json()["results"]


async def test_regenerate_keeps_the_earlier_reply_as_an_alternative(chat, token):
    first = await _ask(chat, token, "Who is on the team?")
    stream = await request(
        "POST", f"/api/v1/chats/{chat.pk}/messages/{first}/regenerate", token=token
    )
    assert stream.headers["content-type"] == "text/event-stream"
    body = await stream.read_all()
    await runs_finished()
    second = int(stream.headers["x-message-id"])
    assert second != first
    assert b'data: {"type": "chunk", "text": "Alice"}\n\n' in body
    assert stream.events()[-1]["type"] == "done"
    assert stream.events()[-1]["status"] == "complete"

    messages = await _messages(chat, token)
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["id"] == second
    assert messages[1]["siblings"] == [first, second]
    assert messages[1]["parent"] == messages[0]["id"]
    earlier = await Message.objects.aget(pk=first)
    assert earlier.status == "complete" and earlier.content


async def test_paging_to_the_earlier_reply_and_continuing_from_it(chat, token):
    first = await _ask(chat, token, "Who is on the team?")
    regenerate = await request(
        "POST", f"/api/v1/chats/{chat.pk}/messages/{first}/regenerate", token=token
    )
    await regenerate.read_all()
    await runs_finished()

    switch = await request(
        "POST", f"/api/v1/chats/{chat.pk}/branch", token=token, body={"message_id": first}
    )
    await switch.read_all()
    assert switch.status == 200
    assert [m["id"] for m in switch.json()["results"]][-1] == first
    # The next prompt continues the branch being shown: after the earlier reply.
    follow_up = await _ask(chat, token, "How many chats do I have?")
    reply = await Message.objects.aget(pk=follow_up)
    question = await Message.objects.aget(pk=reply.parent_id)
    assert question.parent_id == first
    turns = await database_sync_to_async(chat_turns_before)(message=reply)
    assert [t.role for t in turns] == ["user", "assistant", "user"]
    assert turns[1] == Turn("assistant", (await Message.objects.aget(pk=first)).content)


async def test_edit_branches_and_the_earlier_branch_stays_reachable(chat, token):
    first_reply = await _ask(chat, token, "Who is on the team?")
    second_reply = await _ask(chat, token, "How many chats do I have?")
    branch = await _messages(chat, token)
    second_prompt = branch[2]["id"]

    stream = await request(
        "POST",
        f"/api/v1/chats/{chat.pk}/messages/{second_prompt}/edit",
        token=token,
        body={"prompt": "Which organization is this?"},
    )
    await stream.read_all()
    await runs_finished()
    assert stream.status == 200
    assert "Alice Co" in stream.text()
    edited_reply = int(stream.headers["x-message-id"])

    branch = await _messages(chat, token)
    assert [m["content"] for m in branch if m["role"] == "user"] == [
        "Who is on the team?",
        "Which organization is this?",
    ]
    assert branch[2]["siblings"] == [second_prompt, branch[2]["id"]]
    assert branch[3]["id"] == edited_reply
    # The edited reply saw the history before the edited prompt only.
    turns = await database_sync_to_async(chat_turns_before)(
        message=await Message.objects.aget(pk=edited_reply)
    )
    assert [t.content for t in turns if t.role == "user"] == [
        "Who is on the team?",
        "Which organization is this?",
    ]
    # The earlier branch: listed through a message on it, and switched back to.
    through = await _messages(chat, token, f"?message={second_prompt}")
    assert [m["id"] for m in through][-1] == second_reply
    switch = await request(
        "POST", f"/api/v1/chats/{chat.pk}/branch", token=token, body={"message_id": second_prompt}
    )
    await switch.read_all()
    assert [m["id"] for m in switch.json()["results"]] == [
        branch[0]["id"],
        first_reply,
        second_prompt,
        second_reply,
    ]


async def test_a_branch_switch_to_a_message_already_shown_keeps_the_branch(chat, token):
    await _ask(chat, token, "Who is on the team?")
    last = await _ask(chat, token, "How many chats do I have?")
    first_prompt = (await _messages(chat, token))[0]["id"]
    switch = await request(
        "POST", f"/api/v1/chats/{chat.pk}/branch", token=token, body={"message_id": first_prompt}
    )
    await switch.read_all()
    assert switch.json()["results"][-1]["id"] == last


async def test_regenerate_while_a_reply_runs_is_409_and_stores_nothing(chat, token):
    first = await _ask(chat, token, "Who is on the team?")
    _, running = await database_sync_to_async(message_send)(chat=chat, prompt="hi")
    count = await Message.objects.filter(chat=chat).acount()
    stream = await request(
        "POST", f"/api/v1/chats/{chat.pk}/messages/{first}/regenerate", token=token
    )
    await stream.read_all()
    assert stream.status == 409
    assert stream.json()["code"] == "reply_in_progress"
    assert stream.json()["message_id"] == running.pk
    assert await Message.objects.filter(chat=chat).acount() == count
    await database_sync_to_async(message_finish)(
        message_id=running.pk, content="x", status="complete"
    )


@pytest.mark.parametrize(
    ("kind", "target", "body", "status", "code"),
    [
        # Regenerating a prompt, editing a reply: not that kind of message.
        ("regenerate", "prompt", None, 404, "message_not_found"),
        ("edit", "reply", {"prompt": "x"}, 404, "message_not_found"),
        ("edit", "prompt", {"prompt": "   "}, 400, "prompt_empty"),
        ("edit", "prompt", {}, 400, "prompt_missing"),
        ("edit", "prompt", {"prompt": "x" * 9000}, 400, "prompt_too_long"),
        ("edit", "prompt", {"prompt": "a\x00b"}, 400, "invalid_characters"),
        ("edit", "prompt", b"{not json", 400, None),
        ("edit", "prompt", ["a list"], 400, "malformed"),
        ("regenerate", "reply", b"[1, 2]", 400, "malformed"),
    ],
)
async def test_bad_regenerate_and_edit_requests_are_refused_and_store_nothing(
    chat, token, kind, target, body, status, code
):
    reply_id = await _ask(chat, token, "Who is on the team?")
    prompt_id = (await Message.objects.aget(pk=reply_id)).parent_id
    target_id = prompt_id if target == "prompt" else reply_id
    count = await Message.objects.filter(chat=chat).acount()
    stream = await request(
        "POST", f"/api/v1/chats/{chat.pk}/messages/{target_id}/{kind}", token=token, body=body
    )
    await stream.read_all()
    assert stream.status == status, stream.body
    if code:
        assert stream.json()["code"] == code
    assert "error" in stream.json()
    assert await Message.objects.filter(chat=chat).acount() == count


async def test_oversized_bodies_are_413(chat, token, settings):
    settings.API_JSON_MAX_BYTES = 1000
    reply_id = await _ask(chat, token, "Who is on the team?")
    prompt_id = (await Message.objects.aget(pk=reply_id)).parent_id
    stream = await request(
        "POST",
        f"/api/v1/chats/{chat.pk}/messages/{prompt_id}/edit",
        token=token,
        body={"prompt": "x" * 2000},
    )
    await stream.read_all()
    assert stream.status == 413


async def test_bob_and_charlie_cannot_regenerate_edit_or_switch_alices_chat(
    chat, token, bob_api, charlie_api
):
    reply_id = await _ask(chat, token, "Who is on the team?")
    prompt_id = (await Message.objects.aget(pk=reply_id)).parent_id
    count = await Message.objects.filter(chat=chat).acount()
    for other in (bob_api.raw_token, charlie_api.raw_token):
        for path, body in (
            (f"messages/{reply_id}/regenerate", None),
            (f"messages/{prompt_id}/edit", {"prompt": "mine now"}),
            ("branch", {"message_id": prompt_id}),
        ):
            stream = await request(
                "POST", f"/api/v1/chats/{chat.pk}/{path}", token=other, body=body
            )
            await stream.read_all()
            assert stream.status == 404, (path, stream.body)
    anonymous = await request("POST", f"/api/v1/chats/{chat.pk}/messages/{reply_id}/regenerate")
    await anonymous.read_all()
    assert anonymous.status == 401
    assert await Message.objects.filter(chat=chat).acount() == count


async def test_a_message_of_another_chat_is_not_found(chat, token, alice, organization):
    other = await database_sync_to_async(chat_create)(user=alice, organization=organization)
    other_reply = await _ask(other, token, "Who is on the team?")
    for path, body in (
        (f"messages/{other_reply}/regenerate", None),
        ("branch", {"message_id": other_reply}),
    ):
        stream = await request("POST", f"/api/v1/chats/{chat.pk}/{path}", token=token, body=body)
        await stream.read_all()
        assert stream.status == 404, (path, stream.body)


@pytest.mark.parametrize("message_id", ["x", -1, 10**30, None])
async def test_a_bad_branch_message_id_is_400(chat, token, message_id):
    stream = await request(
        "POST", f"/api/v1/chats/{chat.pk}/branch", token=token, body={"message_id": message_id}
    )
    await stream.read_all()
    assert stream.status == 400


async def test_the_seed_path_regenerates_too(chat, token):
    reply_id = await _ask(chat, token, "Who is on the team?")
    stream = await request("POST", f"/chats/{chat.pk}/messages/{reply_id}/regenerate", token=token)
    await stream.read_all()
    await runs_finished()
    assert stream.status == 200
    assert stream.events()[-1]["type"] == "done"


def test_a_chat_whose_leaf_was_deleted_shows_its_newest_branch(chat):
    _, first = message_send(chat=chat, prompt="one")
    message_finish(message_id=first.pk, content="1", status="complete")
    _, second = message_send(chat=chat, prompt="two")
    message_finish(message_id=second.pk, content="2", status="complete")
    Chat.objects.filter(pk=chat.pk).update(current_leaf=None)
    chat.refresh_from_db()
    assert [m.content for m in chat_branch(chat=chat)] == ["one", "1", "two", "2"]


async def test_the_page_shows_the_branch_through_a_searched_message(chat, token, alice):
    first = await _ask(chat, token, "Who is on the team?")
    regenerate = await request(
        "POST", f"/api/v1/chats/{chat.pk}/messages/{first}/regenerate", token=token
    )
    await regenerate.read_all()
    await runs_finished()
    from django.test import Client

    def page(query):
        client = Client()
        client.force_login(alice)
        return client.get(f"/chats/{chat.pk}/{query}").content.decode()

    assert f'data-message-id="{first}"' not in await sync_to_async(page)("")
    assert f'data-message-id="{first}"' in await sync_to_async(page)(f"?message={first}")
