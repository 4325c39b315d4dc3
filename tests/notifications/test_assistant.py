"""The assistant's answers about alerts: the builtin backend's, the openai backend's `alerts`
tool and summary line. Every number must be what `alert_counts(alerts_in_window(...))` gives
for the window the answer links on the alerts page (`/alerts/?since=…&until=…`)."""

from __future__ import annotations

import json
import re
import zoneinfo
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from chats.assistants import Turn
from chats.assistants.builtin import BuiltinBackend
from chats.selectors import assistant_context_for_chat
from chats.services import chat_create
from notifications.assistant import (
    AlertsAssistantData,
    answer_alert_question,
    parse_alert_question,
)
from notifications.models import Alert, AlertRule, Webhook, WebhookDelivery
from notifications.selectors import (
    alert_counts,
    alerts_for_organization,
    alerts_in_window,
    alerts_matching,
)
from tests.events.conftest import event_make
from tests.events.fake_tool_model import FakeToolModel

pytestmark = pytest.mark.django_db(transaction=True)

# A Monday noon (UTC, the test organization's zone unless a test sets another).
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
PAGE_LINK = re.compile(r"\]\((/alerts/\?[^)\s]+)\)")
TOTAL = re.compile(r"\*\*(\d+) (?:\w+ )?alerts?\*\*")


def alert_make(source, camera, *, at: datetime, label: str = "person", status=None) -> Alert:
    """An alert as `alerts_create` stores it, and for a webhook's its outbox row in `status`."""
    event = event_make(camera, label=label, at=at - timedelta(seconds=2))
    alert = Alert.objects.create(
        organization_id=camera.organization_id,
        event=event,
        rule=source if isinstance(source, AlertRule) else None,
        webhook=source if isinstance(source, Webhook) else None,
        camera=camera,
        label=label,
        created_at=at,
    )
    if isinstance(source, Webhook):
        WebhookDelivery.objects.create(
            webhook=source,
            alert=alert,
            payload={},
            status=status or WebhookDelivery.Status.DELIVERED,
            attempts=1,
            created_at=at,
            next_attempt_at=at,
        )
    return alert


@pytest.fixture
def rules(organization):
    rule = AlertRule.objects.create(organization=organization, name="People at the door")
    hook = Webhook.objects.create(
        organization=organization, name="Home hook", url="https://hooks.example.com/in"
    )
    return rule, hook


@pytest.fixture
def alerts(rules, front_door, back_yard, charlie_camera, charlie_organization):
    """Today: 3 rule alerts (2 on Front door), 3 webhook alerts (one of each delivery status)
    and a car; yesterday: 2; Charlie's organization: alerts of its own, today."""
    rule, hook = rules
    made = {
        "today": [
            alert_make(rule, front_door, at=NOW - timedelta(minutes=50)),
            alert_make(rule, front_door, at=NOW - timedelta(minutes=10)),
            alert_make(rule, back_yard, at=NOW - timedelta(hours=2)),
            alert_make(hook, front_door, at=NOW - timedelta(minutes=5)),
            alert_make(
                hook, back_yard, at=NOW - timedelta(hours=3), status=WebhookDelivery.Status.PENDING
            ),
            alert_make(
                hook, back_yard, at=NOW - timedelta(hours=4), status=WebhookDelivery.Status.FAILED
            ),
            alert_make(rule, back_yard, at=NOW - timedelta(hours=5), label="car"),
        ],
        "yesterday": [
            alert_make(rule, front_door, at=NOW - timedelta(hours=14)),
            alert_make(hook, front_door, at=NOW - timedelta(hours=20)),
        ],
    }
    charlie_rule = AlertRule.objects.create(organization=charlie_organization, name="Gate")
    for minutes in (1, 2, 3):
        alert_make(charlie_rule, charlie_camera, at=NOW - timedelta(minutes=minutes))
    return made


def ask(organization, text: str, now: datetime = NOW) -> str:
    answer = answer_alert_question(organization=organization, text=text, now=now)
    assert answer is not None, text
    return answer


def page_window(answer: str) -> list[dict[str, str]]:
    return [dict(parse_qsl(urlsplit(link).query)) for link in PAGE_LINK.findall(answer)]


def counted_on_page(organization, params: dict[str, str], labels=()):
    """What the alerts page's window holds, counted with the selectors the page uses."""
    alerts = alerts_in_window(
        alerts_for_organization(organization=organization),
        since=parse_datetime(params["since"]),
        until=parse_datetime(params["until"]),
    )
    if "camera" in params:
        alerts = alerts_matching(alerts, camera_public_ids=(params["camera"],))
    return alert_counts(alerts_matching(alerts, labels=labels))


# --- reading the question ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "what alerts did I get today?",
        "how many alerts this week?",
        "alerts from the Front door yesterday",
        "did any webhook fail today?",
        "which rules fired today?",
        "any notifications in the last hour?",
    ],
)
def test_alert_questions_are_read_as_such(text):
    question = parse_alert_question(
        text, now=NOW, tz=UTC, camera_names=["Front door", "Back yard"], known_labels=["alert"]
    )
    assert question is not None
    # A model with an "alert" class does not turn "alerts" into a class filter.
    assert question.labels == ()


@pytest.mark.parametrize(
    "text",
    [
        "how many people today?",
        "what did the cameras see today?",
        "how many events this week?",
        "what rules do I have?",
        "what can you tell me about alerts? help",
    ],
)
def test_other_questions_are_left_to_the_events_answers(text):
    assert parse_alert_question(text, now=NOW, tz=UTC, camera_names=["Front door"]) is None


def test_the_period_camera_and_class_are_read_as_the_events_answers_read_them():
    question = parse_alert_question(
        "person alerts from the Front door yesterday",
        now=NOW,
        tz=zoneinfo.ZoneInfo("Asia/Tokyo"),
        camera_names=["Front door", "Back yard"],
    )
    assert question.cameras == ("Front door",)
    assert question.labels == ("person",)
    assert question.period.description == "yesterday"
    # NOW is 21:00 on the 7th in Tokyo: yesterday is Tokyo's 6th.
    assert question.period.start == datetime(2026, 12, 5, 15, 0, tzinfo=UTC)
    assert question.period.end == datetime(2026, 12, 6, 15, 0, tzinfo=UTC)
    assert parse_alert_question("did any webhook fail?", now=NOW, tz=UTC).about_webhooks
    assert not parse_alert_question("which rules fired?", now=NOW, tz=UTC).about_webhooks


# --- the builtin backend's answers ------------------------------------------------------------


def test_todays_alerts_are_counted_as_the_alerts_page_counts_them(organization, alerts):
    answer = ask(organization, "What alerts did I get today?")
    (window,) = page_window(answer)
    assert window == {"since": "2026-12-07T00:00:00Z", "until": "2026-12-07T12:00:00Z"}
    counts = counted_on_page(organization, window)
    assert counts.total == 7 == len(alerts["today"])
    assert int(TOTAL.search(answer).group(1)) == counts.total
    assert "**7 alerts** across all cameras today (00:00–12:00)" in answer
    assert "People at the door 4, Home hook 3." in answer
    assert (counts.webhooks_delivered, counts.webhooks_pending, counts.webhooks_failed) == (1, 1, 1)
    assert "**1 delivered**, **1 still retrying**, **1 given up**" in answer
    # The newest first, with their events' links, in the organization's time.
    newest = alerts["today"][3]
    assert answer.index(f"(/events/{newest.event_id})") < answer.index(
        f"(/events/{alerts['today'][1].event_id})"
    )
    assert f"[person on Front door at 11:55:00](/events/{newest.event_id}) (Home hook)" in answer
    assert "Gate" not in answer and "Charlie" not in answer


def test_this_weeks_alerts_start_on_monday(organization, alerts, rules, front_door):
    alert_make(rules[0], front_door, at=NOW - timedelta(days=2))  # Saturday: last week
    answer = ask(organization, "how many alerts this week?")
    (window,) = page_window(answer)
    assert window["since"] == "2026-12-07T00:00:00Z"
    assert "**7 alerts**" in answer
    answer = ask(organization, "how many alerts in the last 3 days?")
    assert "**10 alerts**" in answer
    assert counted_on_page(organization, page_window(answer)[0]).total == 10


def test_alerts_from_one_camera_link_the_page_for_that_camera(organization, alerts, front_door):
    answer = ask(organization, "alerts from the Front door yesterday")
    (window,) = page_window(answer)
    assert window == {
        "since": "2026-12-06T00:00:00Z",
        "until": "2026-12-07T00:00:00Z",
        "camera": front_door.public_id,
    }
    assert counted_on_page(organization, window).total == 2
    assert "**2 alerts** on **Front door** yesterday" in answer
    assert "[the alerts on Front door](/alerts/?" in answer
    assert "Home hook 1, People at the door 1." in answer


def test_a_class_narrows_the_count(organization, alerts):
    answer = ask(organization, "how many car alerts today?")
    assert "**1 car alert**" in answer
    assert counted_on_page(organization, page_window(answer)[0], labels=("car",)).total == 1
    assert "(it lists every class)" in answer


def test_a_webhook_question_leads_with_the_deliveries(organization, alerts):
    answer = ask(organization, "did any webhook fail today?")
    assert answer.startswith(
        "Webhook deliveries of these alerts: **1 delivered**, **1 still retrying**, **1 given up**."
    )
    assert "**7 alerts**" in answer


def test_which_rules_fired(organization, alerts):
    answer = ask(organization, "which rules fired in the last hour?")
    assert (
        "**3 alerts** across all cameras in the last hour (11:00–12:00): People at the door 2, "
        "Home hook 1." in answer
    )


def test_today_is_the_organizations_day(organization, rules, front_door):
    organization.time_zone = "Asia/Tokyo"
    organization.save()
    now = datetime(2026, 12, 7, 16, 0, tzinfo=UTC)  # 01:00 on the 8th in Tokyo
    counted = alert_make(rules[0], front_door, at=datetime(2026, 12, 7, 15, 30, tzinfo=UTC))
    alert_make(rules[0], front_door, at=datetime(2026, 12, 7, 14, 0, tzinfo=UTC))  # Tokyo's 7th
    answer = ask(organization, "what alerts did I get today?", now=now)
    (window,) = page_window(answer)
    assert window == {"since": "2026-12-07T15:00:00Z", "until": "2026-12-07T16:00:00Z"}
    assert counted_on_page(organization, window).total == 1
    assert "**1 alert** across all cameras today (00:00–01:00)" in answer
    assert f"[person on Front door at 00:30:00](/events/{counted.event_id})" in answer
    assert "times in Asia/Tokyo" in answer
    yesterday = ask(organization, "alerts yesterday", now=now)
    assert "**1 alert**" in yesterday and "at yesterday 23:00:00" in yesterday


def test_no_alerts_is_said_plainly_with_the_rules_that_could_raise_them(organization, rules):
    rules[1].enabled = False
    rules[1].save()
    answer = ask(organization, "what alerts did I get today?")
    assert answer.startswith(
        "No alerts across all cameras today (00:00–12:00). Alert rules: **People at the door**; "
        "webhooks: **Home hook** (off)."
    )
    assert "**0 delivered**" in answer
    assert page_window(answer) == [
        {"since": "2026-12-07T00:00:00Z", "until": "2026-12-07T12:00:00Z"}
    ]


def test_without_rules_or_webhooks_the_answer_says_how_to_make_one(organization, charlie_camera):
    # Charlie's rules and alerts are not Alice's.
    charlie_rule = AlertRule.objects.create(organization=charlie_camera.organization, name="Gate")
    alert_make(charlie_rule, charlie_camera, at=NOW - timedelta(minutes=1))
    answer = ask(organization, "what alerts did I get today?")
    assert answer.startswith("Alice Co has no alert rules or webhooks yet")
    assert "[Notifications](/notifications/)" in answer


def test_a_rules_only_organization_is_told_it_has_no_webhooks(organization, front_door):
    rule = AlertRule.objects.create(organization=organization, name="Door")
    alert_make(rule, front_door, at=NOW - timedelta(minutes=1))
    answer = ask(organization, "did any webhook fail today?")
    assert answer.startswith("Alice Co has no webhooks, so nothing was sent.")
    assert "**1 alert**" in answer


def test_names_people_chose_stay_literal(organization, front_door):
    rule = AlertRule.objects.create(organization=organization, name="[x](https://evil.example)")
    alert_make(rule, front_door, at=NOW - timedelta(minutes=1))
    answer = ask(organization, "alerts today")
    assert "](https://evil.example)" not in answer


# --- through the chat backends ----------------------------------------------------------------


@pytest.fixture
def chat(alice, organization):
    return chat_create(user=alice, organization=organization)


async def reply(backend, chat, prompt: str) -> str:
    context = await sync_to_async(assistant_context_for_chat)(chat=chat)
    return "".join([piece async for piece in backend.stream([Turn("user", prompt)], context)])


@pytest.fixture
def recent(rules, front_door, back_yard, charlie_camera, charlie_organization):
    """Alerts and events of the last hour (the chat answers against the real clock)."""
    now = timezone.now()
    rule, hook = rules
    alert_make(rule, front_door, at=now - timedelta(minutes=20))
    alert_make(hook, back_yard, at=now - timedelta(minutes=10), status="failed")
    event_make(front_door, label="person", at=now - timedelta(minutes=30))
    charlie_rule = AlertRule.objects.create(organization=charlie_organization, name="Gate")
    alert_make(charlie_rule, charlie_camera, at=now - timedelta(minutes=5))


async def test_the_builtin_assistant_answers_about_alerts_and_still_about_events(chat, recent):
    answer = await reply(BuiltinBackend(), chat, "What alerts did I get in the last hour?")
    assert "**2 alerts** across all cameras in the last hour" in answer
    assert "**0 delivered**, **0 still retrying**, **1 given up**" in answer
    assert "(/alerts/?since=" in answer
    # Three events (two under alerts, one without) are events, not alerts.
    events = await reply(BuiltinBackend(), chat, "How many people in the last hour?")
    assert "**3 person events** across all cameras in the last hour" in events
    assert "alert" not in events.lower()
    listed = await reply(BuiltinBackend(), chat, "help")
    assert "did any webhook fail today?" in listed
    assert "which camera was busiest" in listed


def openai_backend(base_url: str):
    from chats.assistants.openai_compatible import OpenAICompatibleBackend

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


async def test_the_openai_backend_counts_alerts_with_the_alerts_tool(
    chat, recent, organization, tool_model
):
    model = tool_model(mode="tools", tool="alerts", arguments={"period": "last 2 hours"})
    answer = await reply(openai_backend(model.base_url), chat, "what alerts did I get?")
    assert answer == "There were 2 events."  # the fake model quotes the tool's count
    first, second = model.requests
    assert "alerts" in {tool["function"]["name"] for tool in first["tools"]}
    call_turn, result = second["messages"][-2:]
    assert call_turn["tool_calls"][0]["function"]["name"] == "alerts"
    result = json.loads(result["content"])
    assert result["by_rule"] == {"Home hook": 1, "People at the door": 1}
    assert result["webhook_deliveries"] == {"delivered": 0, "still_retrying": 0, "given_up": 1}
    assert [alert["camera"] for alert in result["latest"]] == ["Back yard", "Front door"]
    (page,) = result["alerts_page"]
    counts = await sync_to_async(counted_on_page)(
        organization, dict(parse_qsl(urlsplit(page).query))
    )
    assert counts.total == result["count"] == 2


async def test_the_system_prompt_carries_the_alerts_line(chat, recent, organization):
    context = await sync_to_async(assistant_context_for_chat)(chat=chat)
    prompt = await context.system_prompt()
    assert "Alert rules: 'People at the door'; webhooks: 'Home hook'." in prompt
    assert "webhook deliveries 0 delivered, 0 still retrying" in prompt
    assert "Gate" not in prompt


async def test_without_rules_the_system_prompt_says_where_to_make_them(chat):
    context = await sync_to_async(assistant_context_for_chat)(chat=chat)
    prompt = await context.system_prompt()
    assert "no alert rules or webhooks; an admin makes them under /notifications/" in prompt


async def test_the_alerts_tool_is_scoped_and_validated(organization, recent, front_door):
    tools = AlertsAssistantData(organization)
    hour = json.loads(await tools.call("alerts", {"period": "last hour", "camera": "front door"}))
    assert hour["count"] == 1
    assert hour["alerts_page"][0].endswith(f"&camera={front_door.public_id}")
    cars = json.loads(await tools.call("alerts", {"period": "last hour", "class": "car"}))
    assert cars["count"] == 0
    default = json.loads(await tools.call("alerts", {}))
    assert default["period"] == "in the last 24 hours" and default["count"] == 2

    charlie = json.loads(await tools.call("alerts", {"camera": "Charlie gate"}))
    assert "no camera 'Charlie gate'" in charlie["error"]
    assert "error" in json.loads(await tools.call("alerts", {"period": "whenever"}))
    assert "error" in json.loads(await tools.call("alerts", {"period": "last session"}))
    assert "error" in json.loads(await tools.call("alerts", []))  # type: ignore[arg-type]
    assert "error" in json.loads(await tools.call("alerts", {"period": "x" * 100_000}))
    # The events' tools still answer on the same data source.
    assert json.loads(await tools.call("count_events", {}))["count"] == 3


async def test_tool_times_are_in_the_organizations_time_zone(organization, recent):
    organization.time_zone = "Asia/Tokyo"
    await sync_to_async(organization.save)()
    result = json.loads(await AlertsAssistantData(organization).call("alerts", {"period": "today"}))
    assert result["since"].endswith("T00:00:00+09:00")
