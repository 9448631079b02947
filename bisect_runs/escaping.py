"""Config-derived text made harmless where it is shown: a terminal (no escape codes) or a Markdown page (no raw HTML).

Every output path of the tool goes through one of the two functions here: `terminal` for what is
printed and for figure labels, `markdown` for each Markdown document as a whole. See docs/security.md.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls (0x9b is a CSI on some terminals), and the
# bidirectional overrides that make text display in another order than it is read.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_FENCE = re.compile(r"^\s*```")
_BACKTICKS = re.compile(r"`+")


def control_escape(char: str, *, json: bool = False) -> str:
    """`\\x1b` for ESC (`\\u001b` in JSON text, where `\\x` is not an escape)."""
    code = ord(char)
    if json or code > 0xFF:
        return f"\\u{code:04x}"
    return f"\\x{code:02x}"


def terminal(text: str, *, json: bool = False) -> str:
    """Text with every control character spelled out (`ESC` as `\\x1b`), safe to print on a terminal."""
    return _CONTROL.sub(lambda m: control_escape(m.group(), json=json), text)


def markdown(document: str) -> str:
    """A Markdown document with control characters spelled out and raw HTML outside code made text."""
    lines = []
    in_fence = False
    for line in terminal(document).split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
            lines.append(line)
        else:
            lines.append(line if in_fence else _outside_code(line))
    return "\n".join(lines)


def _outside_code(line: str) -> str:
    """`<` written as `&lt;` everywhere but inside code spans (CommonMark: a run of n backticks up to the next run of n)."""
    out: list[str] = []
    pos = 0
    while True:
        opening = _next_run(line, pos)
        if opening is None:
            out.append(_html_text(line[pos:]))
            return "".join(out)
        out.append(_html_text(line[pos : opening.start()]))
        closing = _closing_run(line, opening)
        end = closing.end() if closing is not None else opening.end()
        out.append(line[opening.start() : end])  # a code span, or backticks that open none
        pos = end


def _next_run(line: str, pos: int) -> re.Match[str] | None:
    """The next run of backticks not escaped by a backslash."""
    for match in _BACKTICKS.finditer(line, pos):
        backslashes = len(line[: match.start()]) - len(line[: match.start()].rstrip("\\"))
        if backslashes % 2 == 0:
            return match
        if len(match.group()) > 1:  # `\``: the first backtick is literal, the rest may open a span
            return _next_run(line, match.start() + 1)
    return None


def _closing_run(line: str, opening: re.Match[str]) -> re.Match[str] | None:
    """The run of exactly as many backticks that closes a code span, if any."""
    for match in _BACKTICKS.finditer(line, opening.end()):
        if len(match.group()) == len(opening.group()):
            return match
    return None


def _html_text(text: str) -> str:
    """No tag, comment or autolink can start in this text."""
    return text.replace("<", "&lt;")
