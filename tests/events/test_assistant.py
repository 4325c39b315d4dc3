"""The assistant grounded in session data: the builtin backend's answers, the openai backend's
summary and tools against a real local HTTP server, the tools' scoping, the chat page's links."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone

from chats.assistants import Turn
from chats.assistants.builtin import BuiltinBackend
from chats.assistants.openai_compatible import OpenAICompatibleBackend
from chats.models import Chat, Message
from chats.selectors import assistant_context_for_chat
from chats.services import chat_create
from events.assistant import EventsAssistantData
from events.models import EventZone
from tests.events.conftest import event_make, session_make
from tests.events.fake_tool_model import FakeToolModel

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def data(front_door, back_yard, charlie_camera):
    now = timezone.now()
    session = session_make(front_door, at=now - timedelta(minutes=40), counts={"person": 2})
    for minutes in (30, 20, 10):
        event_make(front_door, label="person", at=now - timedelta(minutes=minutes), session=session)
    event_make(back_yard, label="car", at=now - timedelta(minutes=5))
    event_make(front_door, label="person", at=now - timedelta(hours=30))
    for minutes in (1, 2):
        event_make(charlie_camera, label="person", at=now - timedelta(minutes=minutes))


@pytest.fixture
def chat(alice, organization):
    return chat_create(user=alice, organization=organization)


async def context_for(chat: Chat):
    return await sync_to_async(assistant_context_for_chat)(chat=chat)


async def reply(backend, context, prompt: str) -> str:
    return "".join([piece async for piece in backend.stream([Turn("user", prompt)], context)])


def openai_backend(base_url: str) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(
        base_url=base_url, api_key="k", model="m", connect_timeout=5, idle_timeout=5
    )


@pytest.fixture
def tool_model():
    servers: list[FakeToolModel] = []

    def start(**kwargs) -> FakeToolModel:
        server = FakeToolModel(**kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


async def test_the_builtin_assistant_answers_from_the_events(chat, data, alice_api):
    context = await context_for(chat)
    answer = await reply(
        BuiltinBackend(), context, "How many people on Front door in the last hour?"
    )
    assert "**3 person events** on **Front door** in the last hour" in answer
    assert "(/events/" in answer


async def test_the_builtin_assistant_still_answers_about_members(chat, data):
    context = await context_for(chat)
    answer = await reply(BuiltinBackend(), context, "Who are the members?")
    assert "alice" in answer and "bob" in answer


async def test_an_unknown_question_lists_what_the_assistant_can_answer(chat, data):
    context = await context_for(chat)
    answer = await reply(BuiltinBackend(), context, "Tell me a joke")
    assert "which camera was busiest" in answer
    assert "what happened during a camera's last session" in answer
    assert "Camera data is not available" not in answer


async def test_the_system_prompt_carries_a_compact_summary(chat, data, front_door):
    context = await context_for(chat)
    prompt = await context.system_prompt()
    assert "Session data:" in prompt
    assert "All cameras, last 24 hours: person 3, car 1." in prompt
    assert f"Camera 'Front door' (id {front_door.public_id}" in prompt
    assert "last session" in prompt and "events person 2" in prompt
    assert "Charlie gate" not in prompt


async def test_the_openai_backend_calls_tools_and_answers_with_their_numbers(
    chat, data, tool_model
):
    model = tool_model(mode="tools")
    context = await context_for(chat)
    answer = await reply(openai_backend(model.base_url), context, "how many people today?")
    # 3 people in the last 24 hours: Charlie's events and the older one are not counted.
    assert answer == "There were 3 events."
    first, second = model.requests
    assert {tool["function"]["name"] for tool in first["tools"]} == {
        "count_events",
        "list_events",
        "activity",
        "alerts",  # notifications/assistant.py's, on the same data source
    }
    call_turn, result = second["messages"][-2:]
    assert call_turn["role"] == "assistant"
    assert call_turn["tool_calls"][0]["function"] == {
        "name": "count_events",
        "arguments": json.dumps({"class": "person"}),
    }
    assert result["role"] == "tool" and result["tool_call_id"] == "call_1"
    assert json.loads(result["content"])["by_class"] == {"person": 3}


async def test_a_server_without_tools_gets_the_summary_alone(chat, data, tool_model):
    model = tool_model(mode="no_tools")
    context = await context_for(chat)
    answer = await reply(openai_backend(model.base_url), context, "how many people today?")
    assert answer == "From the summary: - All cameras, last 24 hours: person 3, car 1."
    with_tools, without = model.requests
    assert "tools" in with_tools and "tools" not in without


async def test_a_refused_key_is_not_retried_without_tools(chat, data, tool_model):
    from chats.assistants import AssistantError

    model = tool_model(mode="refuse_key")
    context = await context_for(chat)
    with pytest.raises(AssistantError, match="refused the API key"):
        await reply(openai_backend(model.base_url), context, "how many people?")
    assert len(model.requests) == 1


async def test_a_tool_call_for_another_camera_name_gets_an_error_not_data(chat, data, tool_model):
    model = tool_model(mode="tools", arguments={"camera": "Charlie gate"})
    context = await context_for(chat)
    answer = await reply(openai_backend(model.base_url), context, "people at Charlie gate?")
    result = json.loads(model.requests[1]["messages"][-1]["content"])
    assert "no camera 'Charlie gate'" in result["error"]
    assert answer == "There were None events."


async def test_tool_calls_are_scoped_and_validated(organization, data, front_door, alice_api):
    tools = EventsAssistantData(organization)
    counted = json.loads(await tools.call("count_events", {"camera": "front door"}))
    assert counted["count"] == 3
    since, until = counted["since"], counted["until"]
    api = await sync_to_async(alice_api.get)(
        "/api/v1/events", {"camera": front_door.public_id, "since": since, "until": until}
    )
    assert api.json()["count"] == 3

    listed = json.loads(await tools.call("list_events", {"limit": 2}))
    assert [event["class"] for event in listed["events"]] == ["car", "person"]
    assert listed["events"][0]["url"].startswith("/events/")

    activity = json.loads(await tools.call("activity", {"bucket": "1h"}))
    assert sum(sum(counts) for counts in activity["series"].values()) == 4

    assert "error" in json.loads(await tools.call("count_events", {"since": "tuesday"}))
    assert "error" in json.loads(await tools.call("activity", {"bucket": "1s"}))
    assert "error" in json.loads(await tools.call("list_events", {"limit": "many"}))
    assert "error" in json.loads(await tools.call("drop_tables", {}))
    assert "error" in json.loads(await tools.call("count_events", []))  # type: ignore[arg-type]


async def test_naive_tool_times_are_in_the_organizations_time_zone(organization, front_door):
    organization.time_zone = "America/New_York"
    await sync_to_async(organization.save)()
    tools = EventsAssistantData(organization)
    counted = json.loads(
        await tools.call(
            "count_events", {"since": "2026-12-05T20:00:00", "until": "2026-12-05T21:00:00"}
        )
    )
    assert counted["since"] == "2026-12-05T20:00:00-05:00"
    assert counted["until"] == "2026-12-05T21:00:00-05:00"


def test_the_chat_page_renders_links_to_events(alice, organization, front_door):
    event = event_make(front_door, label="person", at=timezone.now())
    chat = chat_create(user=alice, organization=organization)
    Message.objects.create(
        chat=chat, role="user", content="when was a person last seen?", status="complete"
    )
    Message.objects.create(
        chat=chat,
        role="assistant",
        content=f"A **person** was last seen: [event #{event.pk}](/events/{event.pk}).",
        status="complete",
    )
    client = Client()
    client.force_login(alice)
    html = client.get(f"/chats/{chat.pk}/").content.decode()
    assert f'<a href="/events/{event.pk}"' in html


async def test_a_model_that_keeps_calling_tools_is_made_to_answer(chat, data, tool_model):
    from chats.assistants.openai_compatible import MAX_TOOL_ROUNDS

    model = tool_model(mode="always_tools")
    context = await context_for(chat)
    await reply(openai_backend(model.base_url), context, "how many people?")
    assert len(model.requests) == MAX_TOOL_ROUNDS + 1
    assert all("tool_choice" not in body for body in model.requests[:-1])
    assert model.requests[-1]["tool_choice"] == "none"


@pytest.fixture
def driveway_events(front_door, charlie_camera):
    """Two people on Front door, one of whom entered its Driveway; Charlie's camera has a
    zone of the same name with a person in it."""
    now = timezone.now()
    zoned = [
        event_make(front_door, label="person", at=now - timedelta(minutes=5), track_id=1),
        event_make(charlie_camera, label="person", at=now - timedelta(minutes=5), track_id=1),
    ]
    event_make(front_door, label="person", at=now - timedelta(minutes=4), track_id=2)
    for event in zoned:
        EventZone.objects.create(event=event, zone="Driveway", entered_at=event.started_at)


async def test_tool_calls_filter_by_zone_as_the_api_does(organization, driveway_events, alice_api):
    tools = EventsAssistantData(organization)
    counted = json.loads(await tools.call("count_events", {"zone": "driveway"}))
    assert counted["count"] == 1
    api = await sync_to_async(alice_api.get)(
        "/api/v1/events",
        {"zone": "driveway", "since": counted["since"], "until": counted["until"]},
    )
    assert api.json()["count"] == 1
    listed = json.loads(await tools.call("list_events", {"zone": "Driveway"}))
    assert [event["zones"] for event in listed["events"]] == [["Driveway"]]
    everyone = json.loads(await tools.call("count_events", {"class": "person"}))
    assert everyone["count"] == 2
    nowhere = json.loads(await tools.call("count_events", {"zone": "z" * 500}))
    assert nowhere["count"] == 0
