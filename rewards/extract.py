"""Final-answer extraction from model output: the last balanced ``\\boxed{…}``, an ``<answer>`` tag, or the text
after ``</think>``. Linear-time string scans (no regex backtracking on untrusted text)."""

from __future__ import annotations

BOXED = "\\boxed{"


def last_boxed(text: str) -> str | None:
    """Content of the balanced ``\\boxed{…}`` that starts last (nested braces allowed), or None.

    One left-to-right scan with a stack of open braces, so adversarial text (thousands of unclosed boxes) stays
    linear.
    """
    stack: list[int | None] = []  # for each open brace: the content start of a \boxed{, or None for a plain {
    best: tuple[int, int] | None = None
    i, n = 0, len(text)
    while i < n:
        if text.startswith(BOXED, i):
            stack.append(i + len(BOXED))
            i += len(BOXED)
            continue
        ch = text[i]
        if ch == "{":
            stack.append(None)
        elif ch == "}" and stack:
            opened = stack.pop()
            if opened is not None and (best is None or opened > best[0]):
                best = (opened, i)
        i += 1
    return None if best is None else text[best[0] : best[1]]


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


EXTRACTORS = {"boxed": last_boxed, "answer_tag": answer_tag, "after_think": after_think}


def extract_answer(text: str, order=("boxed", "answer_tag", "after_think")) -> str | None:
    """The first extractor in ``order`` that finds a non-empty answer, stripped; None if none does."""
    for name in order:
        if name not in EXTRACTORS:
            raise ValueError(f"unknown answer extractor {name!r}; valid: {sorted(EXTRACTORS)}")
        found = EXTRACTORS[name](text)
        if found is not None and found.strip():
            return found.strip()
    return None
