"""Extraction: find the final answer a completion commits to.

Pure string scanning, linear in the input (no regular expression here has
nested quantifiers), so it is safe to run in the trainer process on any text.

Order of preference:
  1. the last cluster of ``\\boxed{...}`` / ``\\fbox{...}`` / ``\\boxed 5`` after the
     last ``</think>`` (or anywhere, if nothing follows the think block);
  2. Minerva's ``The final answer is ... I hope it is correct``;
  3. the last ``Answer: ...`` line (DAPO), GSM8K's ``#### 42``;
  4. the last ``the answer is ...`` sentence.
Two different boxes joined by "or", or a boxed "3 or 5", is a hedge: the
extractor returns it as ``3 \\text{ or } 5`` and the verifier scores it False.
"""
from __future__ import annotations

import re

MAX_COMPLETION_CHARS = 200_000
"""Longer completions are cut to their last this-many characters."""

MAX_CLUSTER = 10
"""At most this many adjacent boxes are read as one multi-part answer."""

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")
_HEDGE_CONNECTOR_RE = re.compile(r"\bor\b|\bmaybe\b|\bpossibly\b|\balternatively\b|\beither\b", re.I)
_LIST_CONNECTOR_RE = re.compile(
    r"^(?:[\s$,;.()\[\]]|\\[()\[\],;]|\\quad|\\qquad|\band\b|\\text\{\s*and\s*\}|[A-Za-z](?:_\{?\d\}?)?\s*=)*$", re.I)
_MINERVA_RE = re.compile(r"final answer is\s*(.{1,400}?)\s*\.?\s*I hope it is correct", re.I | re.S)
_ANSWER_LINE_RE = re.compile(r"(?:^|\n)[ \t*#>_]*(?:final\s+)?answer[ \t*_]*[:：][ \t*_]*([^\n]{1,400})", re.I)
_GSM8K_RE = re.compile(r"####[ \t]*([^\n]{1,200})")
_ANSWER_IS_RE = re.compile(r"(?:answer|option|choice)\s+(?:is|=|would be|will be)[\s:]*([^\n]{1,300})", re.I)


def _balanced_group(text: str, start: int) -> tuple[str, int] | None:
    """Return (content, end) of the brace group opening at text[start] == '{'."""
    depth = 0
    for k in range(start, len(text)):
        ch = text[k]
        if ch == "\\":
            continue
        if ch == "{" and (k == 0 or text[k - 1] != "\\"):
            depth += 1
        elif ch == "}" and (k == 0 or text[k - 1] != "\\"):
            depth -= 1
            if depth == 0:
                return text[start + 1 : k], k + 1
    return None


def find_boxes(text: str) -> list[tuple[int, int, str]]:
    """All top-level ``\\boxed``/``\\fbox`` answers as (start, end, content)."""
    boxes = []
    pos = 0
    while True:
        m = _BOX_RE.search(text, pos)
        if m is None:
            return boxes
        k = m.end()
        while k < len(text) and text[k] in " \t":
            k += 1
        if k < len(text) and text[k] == "{":
            group = _balanced_group(text, k)
            if group is None:
                return boxes  # unbalanced: the box never closes
            content, end = group
        else:  # ``\boxed 5``: the rest of the token
            m2 = re.match(r"[^\s$.,;]{1,100}", text[k:])
            if m2 is None:
                pos = k
                continue
            content, end = m2.group(0), k + m2.end()
        boxes.append((m.start(), end, content))
        pos = end


def _after_think(text: str) -> str:
    """Text after the last ``</think>`` when it holds an answer; the whole text otherwise."""
    cut = text.rfind("</think>")
    if cut < 0:
        return text
    tail = text[cut + len("</think>") :]
    if _BOX_RE.search(tail) or re.search(r"answer|####", tail, re.I):
        return tail
    return text


def _last_box_cluster(text: str) -> str | None:
    boxes = find_boxes(text)
    if not boxes:
        return None
    cluster = [boxes[-1]]
    hedged = False
    for prev in reversed(boxes[:-1]):
        if len(cluster) >= MAX_CLUSTER:
            break
        between = text[prev[1] : cluster[0][0]]
        if len(between) > 40:
            break
        if _HEDGE_CONNECTOR_RE.search(between):
            hedged = True
        elif not _LIST_CONNECTOR_RE.match(between):
            break
        cluster.insert(0, prev)
    contents = []
    for _, _, c in cluster:
        c = c.strip()
        if c not in contents:
            contents.append(c)
    if len(contents) == 1:
        return contents[0]
    joiner = r" \text{ or } " if hedged else ", "
    return joiner.join(contents)


def _strip_sentence(ans: str) -> str:
    ans = re.sub(r"^(?:\**\s*(?:final\s+)?answer\s*\**\s*[:：]\s*\**)+", "", ans.strip(), flags=re.I).strip()
    # A single $...$ segment inside prose: take the math.
    dollars = [m.group(1) for m in re.finditer(r"\$([^$]{1,400})\$", ans)]
    if len(dollars) == 1 and not re.search(r"\d", ans.replace(dollars[0], "")):
        ans = dollars[0]
    elif len(dollars) > 1:
        ans = r" \text{ or } ".join(dollars) if re.search(r"\bor\b", ans) else ans
    ans = re.sub(r"^[\s*_]+|[\s*_.。]+$", "", ans)
    return ans


def extract_answer(completion: str) -> str | None:
    """The final answer text of ``completion``, or None when it states none.

    Never raises; runs in time linear in ``len(completion)``.
    """
    if not isinstance(completion, str) or not completion:
        return None
    text = completion[-MAX_COMPLETION_CHARS:]
    text = _after_think(text)
    boxed = _last_box_cluster(text)
    if boxed is not None:
        # DAPO asks for a last line "Answer: ..."; when one follows the last box, it is the commitment.
        line = None
        for line in _ANSWER_LINE_RE.finditer(text):
            pass
        boxes_end = text.rfind("boxed") + 1 or text.rfind("fbox") + 1
        if line is not None and line.start() > boxes_end and "boxed" not in line.group(1):
            ans = _strip_sentence(line.group(1))
            if ans:
                return ans
        return boxed.strip()
    hope = text.lower().rfind("i hope it is correct")
    if hope >= 0:  # Minerva: search only the window before the last closing formula
        window = text[max(0, hope - 600) : hope + len("i hope it is correct")]
        m = None
        for m in _MINERVA_RE.finditer(window):
            pass
        if m is not None:
            return _strip_sentence(m.group(1))
    for pattern in (_ANSWER_LINE_RE, _GSM8K_RE, _ANSWER_IS_RE):
        m = None
        for m in pattern.finditer(text):
            pass
        if m is not None:
            ans = _strip_sentence(m.group(1))
            if ans:
                return ans
    return _concluding_number(text)


_CONCLUSION_RE = re.compile(r"^\W*(?:therefore|thus|so|hence|in total|in conclusion|altogether|finally)\b", re.I)
_NEGATION_RE = re.compile(r"\bnot\b|n't\b|\bno\b|\bwrong\b|\bincorrect\b|\bnever\b", re.I)
_NUMBER_RE = re.compile(r"(?<![\w.])-?\$?\d[\d,]*(?:\.\d+)?(?![\w.]*\d)")


def _concluding_number(text: str) -> str | None:
    """Last resort: a concluding last line ("Therefore, she earns $18 a day.") with exactly one number."""
    lines = [ln for ln in text[-2000:].splitlines() if ln.strip()]
    if not lines or not _CONCLUSION_RE.match(lines[-1]) or _NEGATION_RE.search(lines[-1]):
        return None
    numbers = _NUMBER_RE.findall(lines[-1])
    if len(numbers) != 1:
        return None
    return numbers[0].replace("$", "")
