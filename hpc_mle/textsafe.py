"""Text an agent may have written is data, never markup: one helper per output format.

Submission values quoted in grading reasons, failure reasons, log tails and model names from a ledger
can carry Markdown (`| col |`, links), HTML (`<script>`), rich console markup (`[/x]`, which makes
rich raise) or terminal control sequences (ESC ...: clear the screen, retitle the window, fake a link).
Every renderer passes such values through these helpers, so they show literally.
HTML uses `html.escape(str(value))` directly (quotes included: safe in attributes too).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rich.markup import escape as _rich_escape
from rich.text import Text

# CommonMark lets any ASCII punctuation be backslash-escaped; these are the ones that start markup
# (emphasis, code, links, images, raw HTML, tables, headings, strikethrough) inside a table cell.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#!~])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but tab and newline, DEL, C1


def visible(value: Any) -> str:
    """Control characters as `\\xNN`, so no terminal acts on them (tabs and newlines stay)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def md_cell(value: Any) -> str:
    """One Markdown table cell: on one line, with every markup character escaped."""
    return _MD_SPECIAL.sub(r"\\\1", visible(_LINE_BREAKS.sub(" ", str(value))))


def md_row(cells: Iterable[Any]) -> str:
    """One Markdown table row of escaped cells."""
    return "| " + " | ".join(md_cell(c) for c in cells) + " |"


def terminal(value: Any) -> str:
    """For an f-string given to rich's `console.print`: brackets escaped, so no markup is read from it."""
    return _rich_escape(visible(value))


def cell(value: Any) -> Text:
    """A rich table cell that is only text (rich never parses markup in a `Text`)."""
    return Text(visible(value))
