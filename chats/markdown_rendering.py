"""Model text to HTML that is safe to insert: Markdown rendered, then sanitized with nh3; and
`markdown_literal` for names that answers put into Markdown."""

from __future__ import annotations

import re
import threading

import markdown
import nh3

# No images (they would load from anywhere the model names) and nothing that runs or styles.
ALLOWED_TAGS = {
    "a", "p", "br", "hr", "strong", "em", "b", "i", "del", "code", "pre", "blockquote",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}


# A converter per thread, reset between texts: building one (its parser and extensions) cost
# more than converting a reply. Converters are not thread-safe, hence one per thread.
_converters = threading.local()


def _converter() -> markdown.Markdown:
    converter = getattr(_converters, "converter", None)
    if converter is None:
        converter = markdown.Markdown(extensions=["fenced_code", "tables", "sane_lists"])
        _converters.converter = converter
    return converter.reset()


def markdown_to_safe_html(text: str) -> str:
    html = _converter().convert(text)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


# Every character Python-Markdown (with the tables extension) takes a backslash escape for.
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!>|])")
_LINE_BREAKS = re.compile(r"\s+")


def markdown_literal(text: str) -> str:
    """`text` (a camera, member or chat name, a class label: anything a user chose) for a
    Markdown answer, so it renders as exactly these characters: never a link, emphasis, heading
    or HTML. `&` and `<` become entities (Markdown has no escape for them); line breaks and
    runs of spaces become one space, so a name cannot start a block of its own."""
    flat = _LINE_BREAKS.sub(" ", text).strip()
    entities = flat.replace("&", "&amp;").replace("<", "&lt;")
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", entities)
