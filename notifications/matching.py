"""Raising alerts: which of a flush's events meet which rules and webhooks.

Runs as a receiver of `events.signals.events_recorded`, inside the recorder's transaction, so an
event and its alerts (and their webhook outbox rows) are committed together or not at all. It
runs in a savepoint of its own: a failure here rolls back the alerts only, is logged once, and
the events are still recorded (they are matched again at their next write).

Cost: the rules are read once per RULES_CACHE_SECONDS per organization and process; a flush
queries more (existing alerts, the cool-down, the inserts) only when some rule matches.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from cameras.models import Camera
from events.signals import RecordedEvent
from notifications.models import AlertFilter, AlertRule, Webhook
from notifications.services import alerts_create
from project.contained import ContainedFailures

logger = logging.getLogger(__name__)

_failures = ContainedFailures(
    what="Raising alerts",
    logger=logger,
    failed_level=logging.ERROR,
    failed_message="%(what)s failed; the events are recorded without them until it works",
)


def filter_matches(
    rule: AlertFilter, camera_ids: set[int], camera_pk: int, event: RecordedEvent
) -> bool:
    """Whether `event` on camera `camera_pk` meets `rule`'s filter (quiet hours and the cool-down
    are the caller's: they depend on the time and on other alerts, not on the event)."""
    if camera_ids and camera_pk not in camera_ids:
        return False
    if rule.classes and event.label not in rule.classes:
        return False
    if rule.zones and not event.zones.intersection(rule.zones):
        return False
    if event.peak_confidence < rule.min_confidence:
        return False
    return event.duration_seconds >= rule.min_duration_seconds


@dataclass(frozen=True)
class Match:
    rule: AlertFilter
    event: RecordedEvent


# Rules are read at most this often per organization and process (a flush of every camera each
# second would otherwise query them each time); a change made in this process is seen at once,
# one made in another process within this time.
RULES_CACHE_SECONDS = 2.0

_rules_cache: dict[int, tuple[float, list[tuple[AlertFilter, set[int]]]]] = {}
_rules_cache_lock = threading.Lock()


def rules_cache_clear(*args, **kwargs) -> None:
    """Forget the cached rules (a rule or webhook changed in this process)."""
    with _rules_cache_lock:
        _rules_cache.clear()


def _enabled(model: type[AlertFilter], organization_pk: int) -> list[tuple[AlertFilter, set[int]]]:
    rules = list(model.objects.filter(organization_id=organization_pk, enabled=True))
    if not rules:
        return []
    through = model.cameras.through
    owner = f"{model._meta.model_name}_id"
    cameras: dict[int, set[int]] = {rule.pk: set() for rule in rules}
    for rule_pk, camera_pk in through.objects.filter(**{f"{owner}__in": cameras}).values_list(
        owner, "camera_id"
    ):
        cameras[rule_pk].add(camera_pk)
    return [(rule, cameras[rule.pk]) for rule in rules]


def enabled_rules(organization_pk: int) -> list[tuple[AlertFilter, set[int]]]:
    """The organization's enabled rules and webhooks, each with its cameras' pks (empty: all)."""
    now = time.monotonic()
    with _rules_cache_lock:
        cached = _rules_cache.get(organization_pk)
    if cached is not None and cached[0] > now:
        return cached[1]
    rules = _enabled(AlertRule, organization_pk) + _enabled(Webhook, organization_pk)
    with _rules_cache_lock:
        _rules_cache[organization_pk] = (now + RULES_CACHE_SECONDS, rules)
    return rules


def matches_find(
    *,
    organization_pk: int,
    camera_pk: int,
    events: Iterable[RecordedEvent],
    now: datetime,
    tzinfo_of: Callable[[], object],
) -> list[Match]:
    """The (rule or webhook, event) pairs that raise an alert now: the filter met, outside quiet
    hours, not alerted for this event yet, and past the cool-down of its camera and class."""
    events = [event for event in events if event.pk is not None]
    if not events:
        return []
    rules = enabled_rules(organization_pk)
    if not rules:
        return []
    tzinfo = None
    candidates = []
    for rule, camera_ids in rules:
        for event in events:
            if not filter_matches(rule, camera_ids, camera_pk, event):
                continue
            if rule.quiet_hours_start is not None:
                tzinfo = tzinfo or tzinfo_of()
                if rule.is_quiet_at(now, tzinfo):
                    continue
            candidates.append(Match(rule=rule, event=event))
    if not candidates:
        return []

    from notifications.models import Alert

    owner_of = {AlertRule: "rule_id", Webhook: "webhook_id"}
    event_pks = {match.event.pk for match in candidates}
    already = set(
        Alert.objects.filter(event_id__in=event_pks).values_list(
            "rule_id", "webhook_id", "event_id"
        )
    )
    cooling: set[tuple[str, int, str]] = set()  # (owner field, rule pk, label)
    longest = max(rule.cooldown_seconds for rule, _ in rules)
    if longest:
        for rule_pk, webhook_pk, label, created_at in Alert.objects.filter(
            camera_id=camera_pk, created_at__gt=now - timedelta(seconds=longest)
        ).values_list("rule_id", "webhook_id", "label", "created_at"):
            owner, pk = ("rule_id", rule_pk) if rule_pk is not None else ("webhook_id", webhook_pk)
            for rule, _ in rules:
                if (
                    rule.pk == pk
                    and owner_of[type(rule)] == owner
                    and created_at > now - timedelta(seconds=rule.cooldown_seconds)
                ):
                    cooling.add((owner, pk, label))

    raised = []
    for match in candidates:
        owner = owner_of[type(match.rule)]
        key = (
            (match.rule.pk, None, match.event.pk)
            if owner == "rule_id"
            else (None, match.rule.pk, match.event.pk)
        )
        if key in already or (owner, match.rule.pk, match.event.label) in cooling:
            continue
        raised.append(match)
        already.add(key)
        if match.rule.cooldown_seconds:
            cooling.add((owner, match.rule.pk, match.event.label))
    return raised


def alerts_raise(
    sender, *, organization_pk: int, camera_pk: int, camera_public_id: str, events, **kwargs
) -> None:
    """`events_recorded` receiver: raise the alerts these events call for, in a savepoint."""
    try:
        with transaction.atomic():
            now = timezone.now()
            camera = None

            def tzinfo_of():
                nonlocal camera
                camera = camera or Camera.objects.select_related("organization").get(pk=camera_pk)
                return camera.organization.tzinfo

            matches = matches_find(
                organization_pk=organization_pk,
                camera_pk=camera_pk,
                events=events,
                now=now,
                tzinfo_of=tzinfo_of,
            )
            if matches:
                alerts_create(camera_pk=camera_pk, matches=matches, now=now)
    except Exception as error:
        _failures.failed(error)
    else:
        _failures.succeeded()
