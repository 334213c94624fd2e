"""Extraction: find the final answer a completion commits to.

Pure string scanning, linear in the input (no regular expression here has
nested quantifiers), so it is safe to run in the trainer process on any text.

The completion is first cut at a chat template's end-of-turn token or a few-shot prompt's next
``Q:`` (what follows is a turn the model made up), and dollar amounts lose their ``$`` so that
"$12 x 4 = $48" is not read as a formula.

Order of preference (the first rule that finds an answer gives it):
  1. a JSON object the completion ends with (bare or in a ```json fence): its answer field
     (``final_answer``, ``answer``, ``result``, ... in any case, also one level down). An object without
     one is replaced by the text of its string fields for the rules below; a malformed one is left as it is;
  2. the last closed ``<answer>...</answer>`` (the R1-Zero and GRPO templates), its content read by these rules;
  3. the last cluster of ``\\boxed{...}`` / ``\\fbox{...}`` / ``\\boxed 5`` after the last ``</think>``
     (or anywhere, if nothing follows the think block), unless an answer line or sentence after it names
     a value ("... \\boxed{45} ... The final answer is 10,455.");
  4. Minerva's ``The final answer is ... I hope it is correct``;
  5. a last line ``A: 17`` (the few-shot QA format);
  6. the latest answer cue that names a value: an ``Answer: ...`` line (DAPO), GSM8K's ``#### 42``,
     a ``the answer is ...`` sentence; if none names a value, the first of them, in that order;
  7. the value the last line states (``_final_statement``): a closing display, a formula ending the
     sentence, or its one number; a line without a full stop only when the caller says the completion
     finished (``finished=True``), since a cut-off computation ends the same way.
What a cue's sentence gives (``_strip_sentence``): a choice letter with its option's text as ``(B) 12
apples``; the value after the copula, or the one number the sentence states after dropping a reason
(", as the true number is 900"); one value in two notations; two values are a hedge, returned as
``3 \\text{ or } 5`` and scored False (as are two boxes joined by "or").
"""
from __future__ import annotations

import json
import re

from .cheap import simple_value
from .normalize import _UNIT_WORDS, normalize

MAX_COMPLETION_CHARS = 200_000
"""Longer completions are cut to their last this-many characters."""

MAX_CLUSTER = 10
"""At most this many adjacent boxes are read as one multi-part answer."""

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")
_HEDGE_CONNECTOR_RE = re.compile(r"\bor\b|\bmaybe\b|\bpossibly\b|\balternatively\b|\beither\b", re.I)
_LIST_CONNECTOR_RE = re.compile(
    r"^(?:[\s$,;.()\[\]]|\\[()\[\],;]|\\quad|\\qquad|\band\b|\\text\{\s*and\s*\}|[A-Za-z](?:_\{?\d\}?)?\s*=)*$", re.I)
_MINERVA_RE = re.compile(r"final answer(?: is|[ \t*_]*[:：])\s*(.{1,400}?)\s*\.?\s*I hope it is correct", re.I | re.S)
# "Answer: 42", and "Answer:" alone on its line with the value on the next non-empty line.
_ANSWER_LINE_RE = re.compile(
    r"(?:^|\n)[ \t*#>_]*(?:final\s+)?answer[ \t*_]*[:：][ \t*_]*(?:\n[ \t]*){0,3}([^\n]{1,400})", re.I)
_GSM8K_RE = re.compile(r"####[ \t]*([^\n]{1,200})")
# "the answer is 42", "the answer (arabic numerals) is: \n\n24 + 24 = 48"
_ANSWER_IS_RE = re.compile(r"(?:answer|option|choice)(?:[ \t]*\([^()\n]{0,40}\))?\s+(?:is|=|would be|will be)"
                           r"[ \t:]*(?:\n[ \t]*){0,3}([^\n]{1,300})", re.I)
# The few-shot QA format's last line, "A: 17" (GSM8K's model solutions): only as the last line, so a
# list of options "A: 12 / B: 15" is never read as an answer.
_QA_LINE_RE = re.compile(r"(?:^|\n)[ \t]*A[ \t]*:[ \t]*([^\n]{1,400}?)\s*$")
# A chat template's next turn, or a few-shot prompt's next question: the completion ended before it.
_NEXT_TURN_RE = re.compile(r"<\|(?:im_end|im_start|eot_id|start_header_id|endoftext|end|user|assistant|system)\|>"
                           r"|<(?:end_of_turn|start_of_turn)>|</s>|\n[ \t]*Q[ \t]*:")
# A later commitment after the last box ("... \boxed{45} ... The final answer is 10,455."): it wins.
_LATER_RES = (_ANSWER_LINE_RE, _MINERVA_RE, _ANSWER_IS_RE)


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


def _cut_next_turn(text: str) -> str:
    """The completion up to a chat template's end-of-turn or next-turn token, or a few-shot prompt's
    next ``Q:``: what follows is a turn the model invented, not its answer."""
    seen, start = False, 0  # leading tokens ("<|im_start|>assistant") are not the end of anything
    for m in _NEXT_TURN_RE.finditer(text):
        seen = seen or bool(text[start : m.start()].strip())
        if seen:
            return text[: m.start()]
        start = m.end()
    return text


_CURRENCY_END_RE = re.compile(r"(?:\s|[+\-*/=×x]|\\times|\\cdot|\b[a-zA-Z]{3,})\s*$")


def _currency_dollars(text: str) -> str:
    """Drop the ``$`` of dollar amounts ("$12 x 4 = $48"), keeping ``$...$`` formulas.

    A ``$`` followed by a digit opens a formula only when the text up to the next ``$`` reads as one:
    "$5$" and "$2x+1$" are formulas; "$12 x 4 = $" (ends in an operator or a space) and "$15 a
    day, $" (prose) are amounts. One left-to-right pass, formulas skipped whole: linear time.
    """
    if "$" not in text:
        return text
    out = []
    pos = 0
    n = len(text)
    while True:
        k = text.find("$", pos)
        if k < 0:
            out.append(text[pos:])
            return "".join(out)
        if k > 0 and text[k - 1] == "\\":  # \$ is a dollar sign already
            out.append(text[pos : k + 1])
            pos = k + 1
            continue
        if text.startswith("$$", k):  # display formula: copy it whole
            end = text.find("$$", k + 2)
            end = n if end < 0 else end + 2
            out.append(text[pos:end])
            pos = end
            continue
        close = text.find("$", k + 1)
        inner = text[k + 1 : close] if close >= 0 else ""
        if k + 1 < n and text[k + 1].isdigit() and (close < 0 or len(inner) > 400 or "\n" in inner or (
                "\\" not in inner and _CURRENCY_END_RE.search(inner[-40:]))):
            out.append(text[pos:k])  # an amount: drop its sign
            pos = k + 1
            continue
        end = n if close < 0 else close + 1
        out.append(text[pos:end])
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


def _last_box_cluster(text: str) -> tuple[str, int] | None:
    """(the last cluster of adjacent boxes as one answer, the end of its last box), or None."""
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
    joiner = r" \text{ or } " if hedged else ", "
    return joiner.join(contents), boxes[-1][1]


_COPULA_RE = re.compile(r"\s(?:is|are|was|were|equals|be|comes to|gives|of)\s+(?:about\s+|exactly\s+)?", re.I)
_PROSE_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")


def _value_of_sentence(ans: str) -> str:
    """"The number of ways is 120" -> "120": a sentence that states its value after a copula.

    Only for prose (words outside $...$) with a copula; the value must hold a digit or math, so
    "the answer is correct" yields nothing.
    """
    outside = re.sub(r"\$[^$]*\$|\\\(.*?\\\)", " ", ans)
    if not _PROSE_WORD_RE.search(outside) or _NEGATION_RE.search(outside):
        return ans
    cut = None
    for cut in _COPULA_RE.finditer(ans):
        pass
    if cut is None:
        return ans
    value = ans[cut.end() :].strip()
    return value if re.search(r"\d|\\[a-zA-Z]|\$", value) else ans


def _strip_sentence(ans: str) -> str:
    """The value an answer line or sentence commits to: a choice letter with its option's text ``(B) 12``,
    the value after its copula or the one number it states, one value in two notations, or a hedge."""
    ans = _own_sentence(ans)
    option = _option(ans)
    if option is not None:
        return option
    if re.match(r"[-$\\(\d]", ans):  # "9 because 4 + 5 = 9": a value, then its reason
        ans = _REASON_RE.sub("", ans)
    ans = _PROSE_REASON_RE.sub("", ans) if _is_prose(ans) else ans
    value = _value_of_sentence(ans)
    if value is ans or _is_prose(value):
        # "Tim spent a total of $1110 on fireworks.": the one value the sentence states
        number = None if _NEGATION_RE.search(ans) or "$" in ans else _stated_number(ans.rstrip(" .!"))
        sentence = not _NOT_PROSE_RE.search(ans)  # "42 (forty-three)" is a hedge, not a sentence
        value = number if number is not None and sentence and _is_prose(ans) else value
    option = _option(value)
    ans = option if option is not None else value
    # A single $...$ segment inside prose: take the math.
    dollars = [m.group(1) for m in re.finditer(r"\$([^$]{1,400})\$", ans)]
    if len(dollars) == 1 and not re.search(r"\d", ans.replace(dollars[0], "")):
        ans = dollars[0]
    elif len(dollars) > 1:
        ans = r" \text{ or } ".join(dollars) if re.search(r"\bor\b", ans) else ans
    ans = re.sub(r"^[\s*_]+|[\s*_.。]+$", "", ans)
    return _alternatives(ans)


def _own_sentence(ans: str) -> str:
    """The text an answer cue introduces, up to the end of its own sentence: "42. Note that 43 would be
    wrong." gives 42, unless a later cue commits ("A: 3 + 4 = 7. The answer is 7.") or the sentence is a
    lone option letter before its text ("J. The first study is ...")."""
    ans = _JSON_RESIDUE_RE.split(ans, 1)[0]  # a cue inside a JSON string ends with the string
    ans = re.sub(r"\s{2,}", " ", ans)  # one space per run: no pattern below meets a long run of blanks
    ans = re.sub(r"^(?:\**\s*(?:final\s+)?answer\s*\**\s*[:：]\s*\**)+", "", ans.strip(), flags=re.I).strip()
    ans = _LEADING_CUE_RE.sub("", ans)  # "the correct answer is:\n\nThe answer is (B).": the inner cue
    end = _SENTENCE_END_RE.search(ans)
    if end is not None and not re.fullmatch(r"\**[A-J]", ans[: end.start()]) and _NAMES_VALUE_RE.search(
            ans[: end.start()]) and not _ANSWER_IS_RE.search(ans, end.end()):
        ans = ans[: end.start()]
    ans = re.sub(r"\s*\.?\s*I hope it is correct\.?$", "", ans, flags=re.I)
    return re.sub(r"\s*\((?:since|because|as|which|i\.e\.|e\.g\.|from|by)\b[^()]{0,200}\)\s*\.?$", "", ans, flags=re.I)


def _option(ans: str) -> str | None:
    """``(B) 12 apples`` for an answer that names a choice letter first (or alone, or after its sentence);
    None for anything else."""
    ans = ans.strip().strip("*").strip()
    m = _OPTION_RE.match(ans)
    if m is not None:
        rest = ans[m.end() :].strip().rstrip(".").strip()
        if re.match(r"[-+*/^=<>]", rest):  # "A = 5", "B + C": algebra, not an option
            return None
        letter = m.group(1) or m.group(2) or m.group(3)
        return f"({letter}) {rest}".strip()
    m = _OPTION_AFTER_RE.search(ans)
    if m is not None and m.start() > 0 and _PROSE_WORD_RE.search(ans[: m.start()]):
        return f"({m.group(1)}) " + _strip_sentence(ans[: m.start()])
    return None


def _is_prose(value: str) -> bool:
    """Words other than units outside $...$: "off by 36 jelly beans" is prose, "5 cm" and "$6\\sqrt{3}$" are not."""
    outside = re.sub(r"\$[^$]*\$|\\[A-Za-z]+", " ", value)
    return any(w.lower() not in _UNIT_WORDS for w in _PROSE_WORD_RE.findall(outside))


_REASON_RE = re.compile(r"(?:\s*[,;])?\s+(?:because|since|as|given that|due to|which|so that)\b.*$", re.I | re.S)
# In prose only after a comma: "42 is 3 times as many as 14" keeps its "as".
_PROSE_REASON_RE = re.compile(r"\s*[,;]\s*(?:because|since|as|given that|due to|which)\b.*$", re.I | re.S)
# The end of a JSON string value: a quote before "," or "}", or an escaped newline (not a LaTeX "\\neq").
_JSON_RESIDUE_RE = re.compile(r'"\s*[,}]|\\n(?![a-z])')
# The end of a sentence: a full stop before a capital, not after "Mr", "Dr", "Rs", ... nor in "3.5".
_SENTENCE_END_RE = re.compile(r"(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bDr)(?<!\bSt)(?<!\bRs)(?<!\bNo)(?<!\bvs)(?<!\b[A-Z])"
                              r"[.!?]\s+(?=[A-Z])")
# Brackets, quotes and underscores: code or a formula, not a sentence whose one number could be read.
_NOT_PROSE_RE = re.compile(r"[()\[\]{}_\"\\]|'(?![a-z])|(?<![A-Za-z])'")
_LEADING_CUE_RE = re.compile(r"^(?:(?:so|thus|hence|therefore)\b,?\s*)?the\s+(?:correct\s+|final\s+|right\s+)?"
                             r"(?:answer|option|choice)\s+is\s*[:：]?\s*", re.I)
# A choice letter with or without its option's text: "(B) 12 apples", "B. 12", "C) x = 3", "option C", "J. The first
# study is ...", and a sentence that ends with one: "It will take 10 days. (C)".
_OPTION_RE = re.compile(r"(?:option|choice)\s+\(?([A-J])\)?(?![\w(])[\s.]*$|\(([A-J])\)(?!\w)\s*|([A-J])(?:[.)]|(?=\s*$))\s*")
_OPTION_AFTER_RE = re.compile(r"\s*\(([A-J])\)\s*\.?$")
_ALTERNATIVE_RE = re.compile(r"(?:\s*,)?\s+or\s+|\s*\\text\{\s*or\s*\}\s*", re.I)


def _value(part: str):
    """The values a plain number, fraction, percentage or number in words may stand for ("20%" for
    0.2 or 20); None for anything else."""
    math, _ = normalize(part)
    v = simple_value(math) if math else None
    if v is None:
        return None
    return frozenset((v[0], v[0] / 100)) if v[1] else frozenset((v[0],))  # "20 (20%)": one value


def _alternatives(ans: str) -> str:
    """One value in two notations ("1/4 or .25", "42 (forty-two)") is that value; two different
    values ("3 or 5", "42 (or 43)") are a hedge, returned as ``3 \\text{ or } 5``. A reason after the
    value ("9 because 4 + 5 = 9") is dropped. Anything else is returned unchanged."""
    if not re.search(r"\d", ans) and len(ans.split()) > 6:
        return ans
    head = _REASON_RE.sub("", ans) if re.search(r"\d", ans) else ans
    if head != ans and re.search(r"\d|\\[A-Za-z]", head):
        ans = head
    paren = re.fullmatch(r"(.+?)\s*\((?:or\s+|i\.e\.,?\s*)?([^()]{1,60})\)", ans)
    parts = [paren.group(1), paren.group(2)] if paren else _ALTERNATIVE_RE.split(ans)
    if len(parts) < 2 or len(parts) > 4:
        return ans
    values = [_value(p.strip(" $").rstrip(" .,")) for p in parts]
    if any(v is None for v in values):
        return ans
    if all(v & values[0] for v in values):
        return parts[0].strip()
    return r" \text{ or } ".join(p.strip() for p in parts)


def extract_answer(completion: str, *, finished: bool = False) -> str | None:
    """The final answer text of ``completion``, or None when it states none.

    ``finished``: the caller knows the completion ended where the model chose to stop (at EOS), so a
    last line that states one value is read even without a closing full stop; with False (unknown, or
    cut off by a token limit) such a line may be a computation cut off half-way and states nothing.
    Never raises; runs in time linear in ``len(completion)``.
    """
    if not isinstance(completion, str) or not completion:
        return None
    text = _cut_next_turn(completion[-MAX_COMPLETION_CHARS:])
    text = _after_think(text)
    tail = _json_tail(text)
    if tail is not None:
        obj, start = tail
        answer = _json_answer(obj)
        if answer is not None:
            return answer
        # An object without an answer field: the text before it and its string fields are the completion
        # ({"reasoning": "... so the answer is 5."}, or "The answer is 42.\n\n{"confidence": 0.9}")
        text = "\n\n".join([text[:start], *(v for v in obj.values() if isinstance(v, str))])
    text = _currency_dollars(text)
    for rule in (_answer_tag, _boxed_answer, _minerva_answer, _qa_line_answer, _answer_cue):  # rules 2-6, in order
        ans = rule(text)
        if ans is not None:
            return ans
    if text.rfind("<think>") > text.rfind("</think>"):
        return None  # cut off while thinking: a line of the thought is no answer
    return _final_statement(text[text.rfind("</think>") + len("</think>") :] if "</think>" in text else text,
                            finished=finished)


_ANSWER_TAG_RE = re.compile(r"<answer>(.{0,2000}?)</answer>", re.S | re.I)


def _answer_tag(text: str) -> str | None:
    """The last closed ``<answer>...</answer>`` (the R1-Zero and GRPO templates), read by the other rules when it
    holds more than a value (``<answer>\\boxed{8}</answer>``, ``<answer>The answer is 8.</answer>``)."""
    start = text.lower().rfind("<answer>")
    m = _ANSWER_TAG_RE.match(text, start) if start >= 0 else None
    if m is None or not m.group(1).strip():
        return None
    content = m.group(1).strip()
    if "\n" in content or _BOX_RE.search(content) or _ANSWER_IS_RE.search(content) or _ANSWER_LINE_RE.search(content):
        return extract_answer(content, finished=True)
    return _strip_sentence(content) or None


def _boxed_answer(text: str) -> str | None:
    """The last box cluster, unless an answer line or sentence after it names a value: DAPO asks for a
    last line "Answer: ...", Minerva for "The final answer is ..."; when one follows, it is the commitment."""
    cluster = _last_box_cluster(text)
    if cluster is None:
        return None
    boxed, boxes_end = cluster
    later = None
    for pattern in _LATER_RES:
        for m in pattern.finditer(text, boxes_end):
            if later is None or m.start() > later.start():
                later = m
    if later is not None and "boxed" not in later.group(1):
        ans = _strip_sentence(later.group(1))
        if ans and _NAMES_VALUE_RE.search(ans):  # a value, not "the answer is correct"
            return ans
    return boxed.strip()


def _minerva_answer(text: str) -> str | None:
    """Minerva's "The final answer is ... I hope it is correct", searched only before the last closing."""
    hope = text.lower().rfind("i hope it is correct")
    if hope < 0:
        return None
    window = text[max(0, hope - 600) : hope + len("i hope it is correct")]
    m = None
    for m in _MINERVA_RE.finditer(window):
        pass
    return _strip_sentence(m.group(1)) if m is not None else None


def _qa_line_answer(text: str) -> str | None:
    """A last line ``A: 17`` (few-shot QA), but not "The answer is\nA: 18" (option A)."""
    body = text.rstrip()
    qa = _QA_LINE_RE.search(body[body.rfind("\n") :] if "\n" in body else body)
    before = body[: body.rfind("\n")].rstrip() if "\n" in body else ""
    if qa is None or len(qa.group(1)) > 100 or _SENTENCE_END_RE.search(qa.group(1)) or re.search(
            r"(?:\bis|:)[\s*]*$", before):
        return None  # "A: <sentences of a solution>" (a few-shot answer run on) is read by its cue, not here
    ans = _strip_sentence(qa.group(1))
    return ans if ans and re.search(r"\d|\\[A-Za-z]|\$", ans) else None


_NAMES_VALUE_RE = re.compile(r"\d|\\[a-zA-Z]|\$|^\([A-J]\)")


def _answer_cue(text: str) -> str | None:
    """The value of the last answer cue (an ``Answer:`` line, GSM8K's ``####``, "the answer is ...") that
    names one; if none names a value, the first cue in that order of preference that states anything."""
    last = []
    for pattern in (_ANSWER_LINE_RE, _GSM8K_RE, _ANSWER_IS_RE):
        m = None
        for m in pattern.finditer(text):
            pass
        if m is not None:
            last.append(m)
    for m in sorted(last, key=lambda m: -m.start()):  # "Answer: 3 tables ... So the answer is (C).": the later
        ans = _strip_sentence(m.group(1))
        if ans and _NAMES_VALUE_RE.search(ans):
            return ans
    for m in last:
        ans = _strip_sentence(m.group(1))
        next_line = "\n" in text[m.start() + 1 : m.start(1)]  # "Answer:" alone, the value below it
        if ans and not next_line:  # prose answers ("Answer: yes"), never the next line's prose
            return ans
    return None


MAX_JSON_CHARS = 100_000
"""A JSON object longer than this at the end of a completion is not read as one."""

# Keys of the answer field, in order of preference (compared in lower case, spaces and hyphens as "_").
_JSON_KEYS = ("final_answer", "finalanswer", "answer", "final_result", "answer_value", "final_value",
              "numerical_answer", "numeric_answer", "result")


def _json_tail(text: str) -> tuple[dict, int] | None:
    """(the JSON object a completion ends with, in a ```json fence or bare, parsed with ``json.loads``; where it
    starts); None when it does not end with one or the object is malformed. After a closing fence, a short
    remark without numbers or formulas may follow.

    One backward scan finds where the last object opens (braces counted outside strings, a quote escaped
    when an odd number of backslashes precedes it), then one parse: linear time. An object whose quotes are
    themselves escaped (``{\\"answer\\": 5}``, a JSON string printed raw) is unescaped once.
    """
    body = text.rstrip()
    fence = body.rfind("```")
    if fence >= 0 and len(body) - fence <= 300 and not re.search(r"\d|\\[A-Za-z]", body[fence:]):
        body = body[:fence].rstrip()  # a fence closing the object, maybe with a remark after it ("Hope this helps!")
    if not body.endswith("}"):
        return None
    depth, in_string = 0, False
    stop = max(-1, len(body) - 1 - MAX_JSON_CHARS)
    start = None
    for k in range(len(body) - 1, stop, -1):
        ch = body[k]
        if ch == '"':
            b = k - 1
            while b > stop and body[b] == "\\":
                b -= 1
            if (k - 1 - b) % 2 == 0:
                in_string = not in_string
        elif not in_string and ch == "}":
            depth += 1
        elif not in_string and ch == "{":
            depth -= 1
            if depth == 0:
                start = k
                break
    if start is None:
        return None
    raw = body[start:]
    obj = None
    # As written; with LaTeX's lone backslashes (\sqrt, \cdot: invalid JSON escapes) doubled; unescaped once.
    for attempt in (raw, _BAD_ESCAPE_RE.sub(_double_bad_escape, raw), '"' + raw + '"' if '\\"' in raw else None):
        if attempt is None:
            continue
        try:
            obj = json.loads(attempt, strict=False)  # strict=False: raw newlines inside strings are allowed
            if isinstance(obj, str):
                obj = json.loads(obj, strict=False)
        except (ValueError, RecursionError):  # RecursionError: objects nested thousands deep
            obj = None
        if isinstance(obj, dict):
            return _undo_latex_escapes(obj), start
    return None


_BAD_ESCAPE_RE = re.compile(r'\\(u[0-9a-fA-F]{4}|.)', re.S)
# A model writes "\frac" in a JSON string: JSON reads \f as a form feed. A control character followed by
# letters was a LaTeX command: \frac, \boxed, \times, \right (never a real form feed, backspace, tab, CR).
_LATEX_ESCAPED_RE = re.compile(r"[\x0c\x08\t\r](?=[A-Za-z])")
_LATEX_ESCAPED = {"\x0c": "\\f", "\x08": "\\b", "\t": "\\t", "\r": "\\r"}


# In an answer field, a newline followed by the rest of a LaTeX command was that command: \\neq, \\ne, \\nu, ...
_LATEX_NEWLINE_RE = re.compile(r"\n(?=(?:eq|e|u|abla|ot|otin|eg|exists|i|leq|geq|mid|parallel|subseteq)(?![a-z]))")


def _double_bad_escape(m: re.Match) -> str:
    return m.group(0) if m.group(1)[0] in '"\\/bfnrtu' and (m.group(1)[0] != "u" or len(m.group(1)) == 5) \
        else "\\" + m.group(0)


def _undo_latex_escapes(obj: dict) -> dict:
    return {k: _LATEX_ESCAPED_RE.sub(lambda m: _LATEX_ESCAPED[m.group(0)], v) if isinstance(v, str) else v
            for k, v in obj.items()}


def _json_answer(obj: dict) -> str | None:
    """The answer field of a parsed object (also one level down), as answer text; None without one."""
    for level in (obj, *(v for v in obj.values() if isinstance(v, dict))):
        fields = {re.sub(r"[\s-]+", "_", str(k).strip().lower()): v for k, v in level.items()}
        for key in _JSON_KEYS:
            if key in fields:
                return _json_value(fields[key])
    return None


def _json_value(value) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list) and 0 < len(value) <= MAX_CLUSTER and all(
            isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in value):
        return ", ".join(str(v).strip() for v in value)
    if not isinstance(value, str) or not value.strip():
        return None
    value = _LATEX_NEWLINE_RE.sub(r"\\n", value).strip()  # "x \neq 3" in JSON: \n was a newline
    if len(value) > 400 or _BOX_RE.search(value) or _ANSWER_IS_RE.search(value) or "\n" in value:
        return extract_answer(value, finished=True)  # a worked answer inside the field: its own final answer
    return _strip_sentence(_currency_dollars(value)) or None


_CONCLUSION_RE = re.compile(r"^\W*(?:therefore|thus|so|hence|in total|in conclusion|altogether|finally)\b", re.I)
_NEGATION_RE = re.compile(r"\bnot\b|n't\b|\bno\b|\bwrong\b|\bincorrect\b|\bnever\b", re.I)
_NUMBER_RE = re.compile(r"(?<![\w.])-?\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?(?![\w.]*\d)(?:\s*(?:%|\\%|percent\b))?")
_DISPLAY_END_RE = re.compile(r"(?:\\\[((?:(?!\\\[).){1,600}?)\\\]|\$\$((?:(?!\$\$).){1,600}?)\$\$)\s*$", re.S)
# A formula at the end of a sentence, maybe followed by its unit ("$6\sqrt{3}$ square units.").
_INLINE_END_RE = re.compile(r"(?:\$([^$]{1,400})\$|\\\(((?:(?!\\\().){1,400}?)\\\))((?:\s+[A-Za-z]{1,12}){0,3})[\s.!*]{0,4}$")
_RESTATED_RE = re.compile(r",?\s*\bor\s+(?:about|approximately|roughly|around|nearly|equivalently)\b.{0,80}?(?=[.!]?\s*$)",
                          re.I)  # ", or about 16.7%": a restatement, not a second answer
_STATES_RE = re.compile(r"=|\b(?:is|are|was|were|equals|get|gets|got|gives|makes|yields|obtain|obtains|costs?|weighs?)\b", re.I)
_CALCULATOR_RE = re.compile(r"<<[^<>\n]{0,200}>>")  # GSM8K's calculator annotations, <<9*2=18>>


# A closing remark: a short sentence without a number, a formula, a question or a doubt ("This is the probability.")
_REMARK_RE = re.compile(r"[A-Za-z][A-Za-z' ,]{0,80}[.!]")
_DOUBT_RE = re.compile(r"\b(?:not|no|never|wrong|incorrect|mistake|wait|hmm|check|verify|but|however|actually|again|or|"
                       r"maybe|perhaps|assume|if|think|guess|probably|unsure)\b|n't\b", re.I)


def _final_statement(text: str, finished: bool = False) -> str | None:
    """Last resort: the value the completion's last line states, when it states exactly one.

    A closing display formula (``\\[ \\frac72 \\]``, also before one or two closing remarks such as "This
    is the probability."); a concluding sentence that ends in a formula
    ("Therefore the point is $(3, -2)$."); or one with exactly one number, after its last "=" if
    it has one ("She makes 9 * 2 = 18 dollars every day.", "So, Tom has 15 apples left."). A
    question, a negation or an "or" on that line, or a line that does not end a sentence (a
    completion cut off mid-thought), states nothing.
    """
    tail = _CALCULATOR_RE.sub("", text[-2000:]).rstrip()
    before_remarks = tail
    for _ in range(2):  # "\\[ P = \\frac12 \\]\nThis is the probability.": a closing remark states nothing
        cut = before_remarks.rfind("\n")
        line = before_remarks[cut + 1 :].strip()
        if cut < 0 or not _REMARK_RE.fullmatch(line) or _DOUBT_RE.search(line):
            break
        before_remarks = before_remarks[:cut].rstrip()
    display = _DISPLAY_END_RE.search(before_remarks)  # only a display: "3 + 4 = 7.\nNext, we multiply." is unfinished
    if display is not None:
        return _committed((display.group(1) or display.group(2)).strip())
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    if not lines:
        return None
    last = _RESTATED_RE.sub("", re.sub(r"\s{2,}", " ", lines[-1]))
    if last.rstrip("*$ ").endswith("?") or _NEGATION_RE.search(last):
        return None
    if re.search(r"\bor\b", last, re.I):  # "1/4 or 0.25" states one value; "3 or 5" is a hedge
        stated = None
        for stated in _STATES_RE.finditer(last):
            pass
        tail = last[stated.end() :] if stated else last
        value = _alternatives(tail.rstrip(" \t.!").strip())
        return value if re.fullmatch(r"-?[\d.,/]+%?", value) else None
    if not (finished or _CONCLUSION_RE.match(last) or re.search(r"[.!](?:\s|\*|\$)*$", last)):
        return None  # may be a computation cut off half-way, unless the caller knows the completion ended
    inline = _INLINE_END_RE.search(last)
    if inline is not None and not all(w.lower() in _UNIT_WORDS for w in inline.group(3).split()):
        inline = None  # "$x = 5$ is valid": words after the formula that are not its unit
    if inline is not None:
        formulas = [inline.group(1) or inline.group(2)]
        head = last[: inline.start()]
        while True:  # "$x = 2$ and $y = 3$." states both
            more = re.search(r"\$([^$]{1,400})\$\s*(?:,|and|,\s*and)\s*$", head)
            if more is None or len(formulas) >= 10:
                break
            formulas.insert(0, more.group(1))
            head = head[: more.start()]
        values = [_committed(f.strip()) if len(formulas) == 1 else re.sub(r"[\s.,;]+$", "", f.strip()) for f in formulas]
        return ", ".join(values) if all(values) else None
    if any(re.search(r"\d|[=<>]|\\[A-Za-z]", m) for m in re.findall(r"\$([^$]{0,400})\$", last)):
        return None  # a value in a formula in mid-sentence ("check whether $x = 5$ works"): not stated
    return _stated_number(last)


def _stated_number(line: str) -> str | None:
    """The one number a sentence states: after its last "=" or verb ("She makes 9 * 2 = 18 dollars."), the only
    number in it, or the number right after the verb of a subject without numbers; None otherwise."""
    stated = None
    for stated in _STATES_RE.finditer(line):
        pass
    numbers = _NUMBER_RE.findall(line[stated.end() :]) if stated else []
    if len(numbers) != 1:
        numbers = _NUMBER_RE.findall(line)
        if len(numbers) == 2 and len({n.replace("$", "").replace(",", "") for n in numbers}) == 1:
            numbers = numbers[:1]  # "93 packs can be bought with $93": one value, named twice
    if len(numbers) != 1:
        subject = _SUBJECT_VALUE_RE.match(line)
        numbers = [subject.group(1)] if subject else []
    if len(numbers) != 1:
        return None
    value = numbers[0].replace("$", "").rstrip(",")
    return re.sub(r"\s*(?:\\%|percent)$", "%", value)


# "So, the total cost is 45 dollars for the 3 shirts.": the sentence's subject (no number in it) is
# stated by the number right after its verb; the numbers after that are circumstances. The number
# must end its clause: followed by unit words and then a comma (not a list's next number), a parenthesis, the sentence's end or
# a preposition, never by "more", "times", "of", "and", "+" (a comparison, a product, a list).
_NOT_A_CLAUSE_END = "more|less|fewer|times|and|or|plus|minus|than|to|out|per|each|divided|multiplied"
_SUBJECT_VALUE_RE = re.compile(
    r"^[^\d=]{0,120}?\b(?:is|are|was|were|has|have|had|makes|made|earns|earned|needs|pays|paid|spent|spends|"
    r"costs?|weighs|weighed|gets|got|(?:needs?|has|have|had) to [a-z]+|"
    r"(?:will|would|can|could|must|should) (?:have|be|need|pay|make|earn|get|spend|cost|buy|sell|weigh|deliver))"
    r"\s+(?:a total of\s+|about\s+)?"
    r"(-?\$?\d[\d,]*(?:\.\d+)?%?)"
    r"(?:\s+(?!(?:of|" + _NOT_A_CLAUSE_END + r")\b)[A-Za-z'-]+(?:\s+(?!(?:" + _NOT_A_CLAUSE_END + r")\b)[A-Za-z'-]+){0,3})?"
    r"(?:\s*[,;](?!\s*-?\$?\d)|\s*\(|\s+(?:after|before|since|because|as|when|while|from|for|with|in|on|at|by|if|so|which|that)\b"
    r"|\s+to (?:make|buy|serve|feed|fill|cover|build|finish|complete|pay)\b|\s*[.!]?\s*$)",
    re.I)


def _committed(formula: str) -> str | None:
    """A closing formula as an answer: ``x = 5`` and ``(p,q) = (3,2)`` state their right side, a
    computation ``2 + 3 = 5`` its result; an equation in unknowns (``x^2 + 3x = 10``) states none."""
    formula = re.sub(r"[\s.,;]+$", "", formula)
    if not formula:
        return None
    if "=" not in formula:
        return formula
    left = formula.split("=")[-2]
    # x, (p, q), f(3), a + b + c, mn: a name or a quantity asked for, not an equation in unknowns
    named = re.fullmatch(r"\s*(?:[A-Za-z](?:_\{?\w+\}?)?|\(\s*[A-Za-z](?:\s*,\s*[A-Za-z])+\s*\)|[A-Za-z]\([^()=]{1,20}\)"
                         r"|[a-wA-W](?:\s*[+]?\s*[a-wA-W]){1,5}"
                         r"|\\left\(\s*[A-Za-z](?:\s*,\s*[A-Za-z])+\s*\\right\))\s*", left)
    if named or not re.search(r"(?<!\\)\b[A-Za-z]\b|[A-Za-z](?=\^|_)", re.sub(r"\\[A-Za-z]+", " ", left)):
        return formula.rsplit("=", 1)[1].strip() or None
    return None
