"""Understand a question about what the cameras saw: intent, classes, cameras and period.

Plain Python (no Django, no database): `parse_question` turns text into a `Question` relative
to an explicit `now` and time zone, so the same words always mean the same window and the
rules can be tested without a clock. `events.answers` turns a `Question` into numbers with the
same selectors the API uses.

Periods are half-open windows `[start, end)` in which an event is counted when it *starts*.
A question without a period means the last 24 hours (the window the activity charts show).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo

DEFAULT_WINDOW = timedelta(hours=24)
# "a few minutes" is a deliberately short window: the question people ask right after start-up.
FEW = 5
COUPLE = 2


class Intent(enum.StrEnum):
    COUNT = "count"  # how many events of a class (or of every class), per camera or overall
    SUMMARY = "summary"  # what did the cameras see: counts per class plus recent events
    BUSIEST_CAMERA = "busiest_camera"
    BUSIEST_HOUR = "busiest_hour"
    LAST_SEEN = "last_seen"
    COMPARE = "compare"  # the period against the previous one of the same length
    SESSION = "session"  # what happened during a camera's last session
    HELP = "help"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Period:
    """A window `[start, end)`; `last_session` periods are resolved against the database."""

    start: datetime | None
    end: datetime | None
    description: str
    # How far back the "previous period" of a comparison lies: a day for "today", the window's
    # own length for "the last 2 hours".
    step: timedelta | None = None
    last_session: bool = False
    explicit: bool = True

    def previous(self) -> Period:
        if self.start is None or self.end is None or self.step is None:
            raise ValueError("only a time window has a previous period")
        return Period(
            start=self.start - self.step,
            end=self.end - self.step,
            description=f"the period before ({self.description})",
            step=self.step,
        )


@dataclass(frozen=True)
class Question:
    text: str
    intent: Intent
    labels: tuple[str, ...]
    cameras: tuple[str, ...]
    period: Period
    # A zone the question names ("entered the Driveway"): only events whose object entered it.
    zone: str | None = None


CAPABILITIES = (
    "how many detections of a class there were on a camera or across cameras in a period "
    '("how many people on Front door today?")',
    'what a camera saw in a period ("what did the demo camera see in the last few minutes?")',
    'which camera was busiest ("which camera was busiest yesterday?")',
    'the busiest hour ("what was the busiest hour today?")',
    'when a class was last seen ("when was a car last seen?")',
    'how a period compares with the previous one ("how does today compare with yesterday?")',
    'how many objects entered a zone ("how many people entered the Driveway today?")',
    "what happened during a camera's last session (\"what happened during the last session on "
    'Front door?")',
)
PERIOD_WORDS = (
    'periods: "today", "yesterday", "last hour", "in the last 30 minutes", "since 9:00", '
    '"this week", "during the last session" (default: the last 24 hours)'
)

# Words that name a class, mapped to the label detectors emit.
CLASS_WORDS: dict[str, str] = {
    **dict.fromkeys(
        "person persons people pedestrian pedestrians human humans someone somebody anyone "
        "anybody visitor visitors man men woman women".split(),
        "person",
    ),
    **dict.fromkeys("face faces".split(), "face"),
    **dict.fromkeys("motion motions movement movements moving".split(), "motion"),
    **dict.fromkeys("car cars vehicle vehicles automobile automobiles".split(), "car"),
}

_NUMBER_WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "few": FEW,
    "couple": COUPLE,
}
_UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
_UNITS.update(
    {
        "min": _UNITS["minute"],
        "mins": _UNITS["minute"],
        "minutes": _UNITS["minute"],
        "hr": _UNITS["hour"],
        "hrs": _UNITS["hour"],
        "hours": _UNITS["hour"],
        "days": _UNITS["day"],
        "week": timedelta(weeks=1),
        "weeks": timedelta(weeks=1),
    }
)
_CAMERA_STOP_WORDS = {"camera", "cameras", "cam", "cams", "the", "a", "an", "on", "at", "of"}

_ROLLING = re.compile(
    r"\b(?:last|past|previous)\s+(?:(\d{1,4}|a|an|one|two|three|four|five|six|seven|eight|nine|"
    r"ten|twelve|fifteen|twenty|thirty|few|couple)\s+(?:of\s+)?)?"
    r"(minutes?|mins?|hours?|hrs?|days?|weeks?)\b"
)
_SINCE = re.compile(r"\bsince\s+(\d{1,2})(?:[:.h](\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)?(?![\d/-])")
_SESSION = re.compile(r"\b(?:last|latest|most recent|previous|current)\s+session\b|\bsession\b")


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _local_midnight(moment: datetime, tz: tzinfo) -> datetime:
    local = moment.astimezone(tz)
    return datetime.combine(local.date(), time(0), tzinfo=tz)


def parse_period(text: str, *, now: datetime, tz: tzinfo) -> Period:
    """The window a question talks about; the last 24 hours when it names none."""
    lowered = text.lower()
    if _SESSION.search(lowered):
        return Period(
            start=None, end=None, description="during the last session", last_session=True
        )

    rolling = _ROLLING.search(lowered)
    if rolling:
        amount_word, unit_word = rolling.group(1), rolling.group(2)
        if amount_word is None:
            amount = 1
        elif amount_word.isdigit():
            amount = int(amount_word)
        else:
            amount = _NUMBER_WORDS[amount_word]
        amount = max(amount, 1)
        length = _UNITS[unit_word] * amount
        unit_name = {
            timedelta(minutes=1): "minute",
            timedelta(hours=1): "hour",
            timedelta(days=1): "day",
            timedelta(weeks=1): "week",
        }[_UNITS[unit_word]]
        if amount_word in (None, "a", "an", "one") and amount == 1:
            description = f"in the last {unit_name}"
        else:
            description = f"in the last {amount} {unit_name}s"
        return Period(start=now - length, end=now, description=description, step=length)

    since = _SINCE.search(lowered)
    if since:
        hour, minute = int(since.group(1)), int(since.group(2) or 0)
        meridiem = (since.group(3) or "").replace(".", "")
        if meridiem == "pm" and hour < 12:
            hour += 12
        elif meridiem == "am" and hour == 12:
            hour = 0
        if hour <= 23 and minute <= 59:
            local_now = now.astimezone(tz)
            start = datetime.combine(local_now.date(), time(hour, minute), tzinfo=tz)
            if start > now:  # "since 22:00" asked at 08:00 means last night
                start = datetime.combine(
                    local_now.date() - timedelta(days=1), time(hour, minute), tzinfo=tz
                )
            return Period(
                start=start,
                end=now,
                description=f"since {hour:02d}:{minute:02d}",
                step=timedelta(days=1),
            )

    midnight = _local_midnight(now, tz)
    # "today" wins over "yesterday": "more people today than yesterday?" is about today.
    if re.search(r"\b(today|so far)\b", lowered):
        return Period(start=midnight, end=now, description="today", step=timedelta(days=1))
    if re.search(r"\byesterday\b", lowered):
        start = _local_midnight(midnight - timedelta(hours=12), tz)
        return Period(start=start, end=midnight, description="yesterday", step=timedelta(days=1))
    if re.search(r"\bthis week\b", lowered):
        # "last week" is caught above as the last 7 days; "this week" starts on Monday.
        monday = _local_midnight(midnight - timedelta(days=now.astimezone(tz).weekday()), tz)
        return Period(start=monday, end=now, description="this week", step=timedelta(weeks=1))

    return Period(
        start=now - DEFAULT_WINDOW,
        end=now,
        description="in the last 24 hours",
        step=DEFAULT_WINDOW,
        explicit=False,
    )


def parse_labels(text: str, *, known_labels: Iterable[str] = ()) -> tuple[str, ...]:
    """Classes the question names, as detector labels, in order of first mention."""
    known = {label.lower() for label in known_labels}
    found: list[str] = []
    for word in _words(text):
        label = CLASS_WORDS.get(word)
        if label is None:
            for candidate in (word, word.removesuffix("es"), word.removesuffix("s")):
                if candidate in known:
                    label = candidate
                    break
        if label is not None and label not in found:
            found.append(label)
    return tuple(found)


def parse_cameras(text: str, *, camera_names: Iterable[str]) -> tuple[str, ...]:
    """Camera names (as given) the question mentions.

    A full name anywhere in the text matches; otherwise a word of a name right next to
    "camera" or "cam" does ("the demo camera" finds "Demo scene").
    """
    names = list(dict.fromkeys(camera_names))
    padded = " " + " ".join(_words(text)) + " "
    exact = [name for name in names if _words(name) and f" {' '.join(_words(name))} " in padded]
    # "Front door 2" mentioned means "Front door" was not, unless it appears on its own too.
    exact = [
        name
        for name in exact
        if not any(
            other != name
            and len(other) > len(name)
            and " ".join(_words(name)) in " ".join(_words(other))
            and padded.count(f" {' '.join(_words(name))} ")
            == padded.count(f" {' '.join(_words(other))} ")
            for other in exact
        )
    ]
    if exact:
        return tuple(exact)

    words = _words(text)
    beside_camera = {
        words[i + offset]
        for i, word in enumerate(words)
        if word in ("camera", "cam")
        for offset in (-1, 1)
        if 0 <= i + offset < len(words)
    } - _CAMERA_STOP_WORDS
    beside_camera -= set(CLASS_WORDS)
    return tuple(name for name in names if beside_camera & (set(_words(name)) - _CAMERA_STOP_WORDS))


def parse_zone(
    text: str, *, zone_names: Iterable[str], camera_names: tuple[str, ...] = ()
) -> str | None:
    """The zone (its name as drawn) the question names, the longest when several match; None
    when it names none. A zone named like a camera the question names is the camera, unless
    the question says "zone"."""
    padded = " " + " ".join(_words(text)) + " "
    says_zone = " zone " in padded or " zones " in padded
    cameras = {" ".join(_words(name)) for name in camera_names}
    matches = [
        name
        for name in dict.fromkeys(zone_names)
        if _words(name)
        and f" {' '.join(_words(name))} " in padded
        and (says_zone or " ".join(_words(name)) not in cameras)
    ]
    return max(matches, key=len) if matches else None


def parse_intent(text: str, *, has_labels: bool, has_cameras: bool, has_period: bool) -> Intent:
    lowered = " ".join(_words(text))
    if re.search(r"\b(help|what can you|what do you know|what questions)\b", lowered):
        return Intent.HELP
    if re.search(
        r"\b(compare|compared|comparison|versus|vs|than (the )?(previous|before|usual)|"
        r"more than|fewer than|less than|(more|fewer|less) (people|cars|faces|motion|events|"
        r"detections|activity)? ?than)\b",
        lowered,
    ):
        return Intent.COMPARE
    busiest = re.search(
        r"\b(busiest|most active|most activity|most detections|most events)\b", lowered
    )
    if busiest or re.search(r"\bwhich camera\b.*\bmost\b", lowered):
        if re.search(r"\b(hour|time of day|what time|when)\b", lowered):
            return Intent.BUSIEST_HOUR
        return Intent.BUSIEST_CAMERA
    if re.search(
        r"\b(last seen|last time|last spotted|last detected|most recent(ly)?|latest)\b", lowered
    ) and not re.search(r"\bsession\b", lowered):
        return Intent.LAST_SEEN
    if re.search(r"\bwhen\b", lowered) and re.search(r"\blast\b", lowered) and has_labels:
        return Intent.LAST_SEEN
    if re.search(r"\b(how many|how much|count|number of|total)\b", lowered):
        return Intent.COUNT
    if re.search(r"\bsession\b", lowered):
        return Intent.SESSION
    if re.search(
        r"\b(what did|what has|what have|what was|what were|happen\w*|anything|"
        r"activity|events?|detections?|summary|summari[sz]e|going on|see|saw|seen|detect)\b",
        lowered,
    ):
        return Intent.COUNT if has_labels else Intent.SUMMARY
    if has_labels:
        return Intent.COUNT
    if has_cameras or has_period:
        return Intent.SUMMARY
    return Intent.UNKNOWN


def parse_question(
    text: str,
    *,
    now: datetime,
    tz: tzinfo,
    camera_names: Iterable[str] = (),
    known_labels: Iterable[str] = (),
    zone_names: Iterable[str] = (),
) -> Question:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    labels = parse_labels(text, known_labels=known_labels)
    cameras = parse_cameras(text, camera_names=camera_names)
    zone = parse_zone(text, zone_names=zone_names, camera_names=cameras)
    period = parse_period(text, now=now, tz=tz)
    intent = parse_intent(
        text,
        has_labels=bool(labels),
        has_cameras=bool(cameras) or zone is not None,
        has_period=period.explicit,
    )
    return Question(
        text=text, intent=intent, labels=labels, cameras=cameras, period=period, zone=zone
    )
