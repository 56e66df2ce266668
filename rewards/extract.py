"""Final-answer extraction from model output: the last balanced ``\\boxed{…}``, an ``<answer>…</answer>`` tag, the
text after ``</think>``, or the last number.

Completions are untrusted: every scan here is linear in the length of the text (``str.find``/``rfind`` and regexes
without nested or overlapping quantifiers, one left-to-right brace scan), so a 1 MB adversarial completion costs
milliseconds. Nothing here parses mathematics; it only cuts out the string that ``math_correctness`` compares.
"""

from __future__ import annotations

import re

# Group braces: `\\` (a LaTeX line break) is consumed first so that `\{` / `\}` (literal braces) are skipped.
_BRACE_TOKENS = re.compile(r"\\\\|\\[{}]|[{}]")
_BOXED_OPEN = re.compile(r"\\boxed *\{")
_DOLLARS = re.compile(r"(?<!\\)\$\$?")
_NUMBER = re.compile(r"-?[0-9][0-9,]*(?:\.[0-9]+)?(?: ?\\?%)?")
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_WORD = re.compile(r"[A-Za-z]{2}")


def boxed_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the content of every balanced ``\\boxed{…}``, in the order they close (outer after inner)."""
    if "\\boxed" not in text:
        return []
    box_braces = {m.end() - 1 for m in _BOXED_OPEN.finditer(text)}
    spans, stack = [], []
    for m in _BRACE_TOKENS.finditer(text):
        token = m.group()
        if token == "{":
            stack.append(m.start())
        elif token == "}" and stack:
            opened = stack.pop()
            if opened in box_braces:
                spans.append((opened + 1, m.start()))
    return spans


def last_boxed(text: str) -> str | None:
    """Content of the last-closing balanced ``\\boxed{…}`` with non-blank content (nested braces allowed), or None."""
    for start, end in reversed(boxed_spans(text)):
        if text[start:end].strip():
            return text[start:end]
    return None


def braces_balanced(text: str) -> bool:
    """Every group brace closes, and none closes before it opens (``\\{``, ``\\}`` are literal braces)."""
    depth = 0
    for m in _BRACE_TOKENS.finditer(text):
        token = m.group()
        depth += 1 if token == "{" else -1 if token == "}" else 0
        if depth < 0:
            return False
    return depth == 0


def answer_tag(text: str) -> str | None:
    """Content of the last ``<answer>…</answer>``, or None."""
    end = text.rfind("</answer>")
    if end == -1:
        return None
    start = text.rfind("<answer>", 0, end)
    return None if start == -1 else text[start + len("<answer>") : end]


def after_think(text: str) -> str | None:
    """The text after the last ``</think>``, or None."""
    end = text.rfind("</think>")
    return None if end == -1 else text[end + len("</think>") :]


def answer_region(text: str) -> str | None:
    """The region holding a final answer: the last ``<answer>…</answer>``, else the last ``\\boxed{…}``, else the
    text after ``</think>``; None when none of them has non-blank content (the task rewards read it)."""
    for found in (answer_tag(text), last_boxed(text), after_think(text)):
        if found is not None and found.strip():
            return found
    return None


def last_number(text: str) -> str | None:
    """The last number written in the text (``-12``, ``1,000``, ``3.5``, ``50%``), or None."""
    found = None
    for found in _NUMBER.finditer(text):
        pass
    return None if found is None else found.group().rstrip(",")


def last_inline_math(text: str) -> str | None:
    """Content of the last closed ``$…$``/``$$…$$``, ``\\(…\\)`` or ``\\[…\\]`` span, whichever ends last."""
    candidates = []  # (end position, content)
    dollars = [(m.start(), m.end()) for m in _DOLLARS.finditer(text)]
    if len(dollars) >= 2:
        k = len(dollars) - 2 if len(dollars) % 2 == 0 else len(dollars) - 3  # pairs are matched left to right
        candidates.append((dollars[k + 1][0], text[dollars[k][1] : dollars[k + 1][0]]))
    for opener, closer in (("\\(", "\\)"), ("\\[", "\\]")):
        end = text.rfind(closer)
        start = text.rfind(opener, 0, end) if end != -1 else -1
        if start != -1:
            candidates.append((end, text[start + len(opener) : end]))
    return max(candidates)[1] if candidates else None


def looks_like_prose(text: str) -> bool:
    """True if, with LaTeX commands removed, the text has a word of two or more letters (``x = 3`` has none)."""
    return _WORD.search(_LATEX_COMMAND.sub(" ", text)) is not None


def answer_in_text(text: str | None) -> str | None:
    """The answer inside a free-form region (an answer tag, the text after ``</think>``, a reference solution).

    In order: the last ``\\boxed{}``; else the last inline-math span; else the whole region if it reads as an
    expression rather than prose (``\\frac{1}{2}``, ``x=3``, ``50\\%``); else the last number in it; else the
    whole region (math-verify then compares it as a string).
    """
    if text is None or not text.strip():
        return None
    for found in (last_boxed(text), last_inline_math(text)):
        if found is not None and found.strip():
            return found.strip()
    if looks_like_prose(text):
        return last_number(text) or text.strip()
    return text.strip()


EXTRACTORS = {
    "boxed": last_boxed,
    "answer_tag": lambda text: answer_in_text(answer_tag(text)),
    "after_think": lambda text: answer_in_text(after_think(text)),
    "last_number": last_number,
}
DEFAULT_ORDER = ("boxed", "answer_tag", "after_think")


def check_extractors(order) -> tuple[str, ...]:
    """Validate an extraction order (a name or a sequence of names) → tuple of names."""
    order = (order,) if isinstance(order, str) else tuple(order)
    unknown = [name for name in order if name not in EXTRACTORS]
    if unknown or not order:
        raise ValueError(f"unknown answer extractor(s) {unknown or order!r}; valid: {sorted(EXTRACTORS)}")
    return order


def extract_answer(text: str, order=DEFAULT_ORDER) -> str | None:
    """The answer found by the first extractor in ``order`` that finds a non-blank one, stripped; else None."""
    for name in check_extractors(order):
        found = EXTRACTORS[name](text)
        if found is not None and found.strip():
            return found.strip()
    return None


def reference_answer(reference) -> str | None:
    """The reference answer to compare with: the column value as text; after ``####`` (GSM8K) or inside a
    ``\\boxed{}`` (MATH solutions) when it has one. None or blank → None (the reward does not apply)."""
    if reference is None:
        return None
    text = str(reference)
    if "####" in text:
        text = text[text.rfind("####") + 4 :]
    if not text.strip():
        return None
    return answer_in_text(text)
