"""Names people chose are shown as written in the assistant's Markdown answers: never a link,
never HTML, never vanishing. Rendered with the chat page's own renderer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from cameras.services import camera_create
from chats.assistants import AssistantContext
from chats.assistants.base import Member
from chats.assistants.builtin import builtin_answer
from chats.markdown_rendering import markdown_literal, markdown_to_safe_html
from events.answers import answer_question
from events.models import DetectionEvent
from tests.chats.facts import fixed_facts

pytestmark = pytest.mark.django_db

LINK_NAME = "[Reset your password](https://evil.example/login)"
HTML_NAME = "<b>Garage</b> & <script>alert(1)</script>"


def _event(camera, *, label: str, minutes_ago: float) -> DetectionEvent:
    at = timezone.now() - timedelta(minutes=minutes_ago)
    return DetectionEvent.objects.create(
        organization_id=camera.organization_id,
        camera=camera,
        label=label,
        started_at=at,
        last_seen_at=at + timedelta(seconds=3),
        ended_at=at + timedelta(seconds=3),
        peak_confidence=0.9,
        frames_seen=30,
        best_bbox=[1, 2, 3, 4],
    )


@pytest.fixture
def hostile_cameras(organization):
    link = camera_create(organization=organization, name=LINK_NAME, source="push:")
    html = camera_create(organization=organization, name=HTML_NAME, source="push:")
    for minutes in (1, 2, 3):
        _event(link, label="person", minutes_ago=minutes)
    # A class from a model's label file is a name someone chose too.
    _event(html, label="[click](https://evil.example)", minutes_ago=4)
    return link, html


def _rendered(organization, question: str) -> str:
    answer = answer_question(organization=organization, text=question)
    assert answer is not None
    return markdown_to_safe_html(answer)


def test_a_camera_named_like_a_link_shows_as_text_in_which_camera_was_busiest(
    organization, hostile_cameras
):
    html = _rendered(organization, "which camera was busiest today?")
    assert "evil.example" in html
    assert "<a" not in html
    assert "[Reset your password](https://evil.example/login)" in html
    assert "&lt;b&gt;Garage&lt;/b&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.parametrize(
    "question",
    [
        "what happened today?",
        "how many person events today?",
        "when was a person last seen?",
        "how does today compare with yesterday?",
    ],
)
def test_hostile_names_never_become_links_or_html_in_any_answer(
    organization, hostile_cameras, question
):
    html = _rendered(organization, question)
    # The answers' own links point at /events/<id> only; nothing of the names is a link.
    assert "evil.example" not in "".join(part.split('"')[0] for part in html.split('href="')[1:]), (
        html
    )
    assert "<b>" not in html and "<script" not in html


def test_a_name_with_html_shows_its_tags_as_text_instead_of_vanishing():
    html = markdown_to_safe_html(f"**{markdown_literal('<b>Garage</b> #1')}** was busiest")
    assert html == "<p><strong>&lt;b&gt;Garage&lt;/b&gt; #1</strong> was busiest</p>"


@pytest.mark.parametrize(
    "name",
    [
        LINK_NAME,
        "![x](https://evil.example/p.png)",
        "<https://evil.example>",
        "a_b*c* `code` | pipe \\ back",
        "line\n\n# heading\n- item",
        "&lt;entity&gt;",
    ],
)
def test_markdown_literal_renders_as_the_same_characters(name):
    html = markdown_to_safe_html(markdown_literal(name))
    expected = " ".join(name.split()).replace("&", "&amp;").replace("<", "&lt;")
    assert html == f"<p>{expected.replace('>', '&gt;')}</p>"


async def test_the_builtin_assistant_escapes_members_organization_and_facts():
    context = AssistantContext(
        organization_name="[Org](https://evil.example/org)",
        user_name="<i>me</i>",
        members=(Member(username="[bob](https://evil.example/bob)", role="member"),),
        chat_count=1,
        facts=(
            fixed_facts(
                "cameras",
                ("camera",),
                ("Camera '[Door](https://evil.example/door)' (id abc, online)",),
            ),
        ),
    )
    for prompt in ("who are the members?", "which organization?", "cameras?", "hello"):
        html = markdown_to_safe_html(await builtin_answer(prompt, context))
        assert "<a" not in html and "<i>" not in html, html
    members = markdown_to_safe_html(await builtin_answer("who are the members?", context))
    assert "[bob](https://evil.example/bob)" in members
