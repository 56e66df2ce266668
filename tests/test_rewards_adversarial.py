"""Hostile completions against every built-in text reward (issue #4, "Bad input and safety"): for each row of
``tests/data/adversarial_completions.jsonl`` every text reward returns a value (a float, or None where it does not
apply) within 1 s, executes nothing, and never raises.

Rewards tested: the names in ``rewards.list_rewards()`` minus the ones that need images, models or a server
(``NOT_TEXT``: ``clip_score``, ``image_reward``, ``judge``) — today ``boxed_format``, ``countdown``,
``math_correctness``, ``sudoku``, ``think_format``; ``test_text_rewards_are_the_ones_tested`` fails if that set
changes without this file knowing. ``countdown`` and ``sudoku`` get one fixed puzzle as their columns.

``math_correctness`` is tested as ``make_math_correctness(timeout_s=0.5)``: the registered default allows 1.0 s per
symbolic comparison, so an exponent tower costs 1.0 s plus the pipe round trip (measured 1.00–1.09 s on the
2-core machine), over the 1 s budget. The 0.5 s variant is the same code (extraction, fast path, the shared
math-verify worker) with a lower limit; one default-limit check below bounds the registered reward by its own limit.

File format — one JSON object per line::

    {"completion": <text | list of chat messages | generator>, "answer": <text | number | null | generator>,
     "kind": "<category>", "math": <optional: expected math_correctness value>}

* a *generator* (keeps 1 MB strings out of git; the committed file stays well under 3 MB) is expanded at load time:
  ``{"generate": "repeat", "unit": "9", "count": 1000000, "prefix": "\\\\boxed{", "suffix": "}"}`` →
  ``prefix + unit * count + suffix`` (prefix and suffix optional);
  ``{"generate": "segments", "segments": [["\\\\frac{", 10000], ["1", 1], ["}{2}", 10000]]}`` →
  ``"".join(unit * count for unit, count in segments)``.
* ``{CANARY}`` in a completion or answer is replaced by the path of a file under pytest's ``tmp_path`` that each
  code-execution payload would create (``touch``, ``open(…, 'w')``, ``Path.touch``); the test asserts it never
  appears.
* ``math``: absent → math_correctness must give 0.0 (a hostile completion is never "correct"); a number → exactly
  that (rows whose answer is legitimately right, or a reference identical to the completion's answer); ``null`` →
  None (no reference); ``"any"`` → not asserted (math-verify's own leniency, e.g. ``13=12`` counts as ``12``; a
  prose reference judged by its last number; an identical answer longer than ``MAX_ANSWER_CHARS``).

The rows are written by ``build_rows()`` below — edit it, then ``python tests/test_rewards_adversarial.py`` rewrites
the file; ``test_data_file_matches_build_rows`` keeps the two in step.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "adversarial_completions.jsonl"
NOT_TEXT = {"clip_score", "image_reward", "judge"}  # need images / a reward model / a server
TEXT_REWARDS = ("boxed_format", "countdown", "exact_answer", "math_correctness", "sudoku", "think_format")
# the columns each reward reads besides the reference answer (one fixed puzzle for the task rewards)
TASK_COLUMNS = {"countdown": {"numbers": [[2, 3, 4]], "target": [5]},
                "sudoku": {"puzzle": ["0040302120000300"], "solution": ["1243342121344312"]}}
ALLOWED_VALUES = {"boxed_format": (0.0, 0.5), "think_format": (0.0, 0.5), "countdown": (0.0, 0.1),
                  "exact_answer": (0.0, 1.0)}
PER_COMPLETION_S = 1.0
MATH_TIMEOUT_S = 0.5
MB = 1_000_000


# ------------------------------------------------------------------------------------------------ the rows


def _gen(unit, count, prefix="", suffix=""):
    marker = {"generate": "repeat", "unit": unit, "count": count}
    if prefix:
        marker["prefix"] = prefix
    if suffix:
        marker["suffix"] = suffix
    return marker


def _segments(*segments):
    return {"generate": "segments", "segments": [list(s) for s in segments]}


# Python / shell / TeX code that, if anything evaluated it, would create the canary file.
PAYLOADS = [
    "__import__('os').system('touch {CANARY}')",
    '__import__("os").system("touch {CANARY}")',
    "open('{CANARY}', 'w').write('pwned')",
    "eval(\"__import__('os').system('touch {CANARY}')\")",
    "exec(\"open('{CANARY}','w')\")",
    "compile(\"open('{CANARY}','w')\", '<x>', 'exec')",
    "getattr(__import__('os'), 'system')('touch {CANARY}')",
    "__builtins__.__dict__['__import__']('subprocess').call(['touch', '{CANARY}'])",
    "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen'][0](['touch', '{CANARY}'])",
    "(lambda: __import__('os').system('touch {CANARY}'))()",
    "__import__('pathlib').Path('{CANARY}').touch()",
    "__import__('os').popen('touch {CANARY}').read()",
    "import os; os.system('touch {CANARY}')",
    "os.system('touch {CANARY}')",
    "Symbol('x').__class__.__init__.__globals__['__builtins__']['open']('{CANARY}', 'w')",
    "S(\"__import__('os').system('touch {CANARY}')\")",
    "sympify(\"__import__('os').system('touch {CANARY}')\")",
    "parse_expr(\"open('{CANARY}','w')\")",
    "$(touch {CANARY})",
    "`touch {CANARY}`",
    "1; touch {CANARY}",
    "1 && touch {CANARY} || true",
    "\\write18{touch {CANARY}}",
    "\\immediate\\write18{touch {CANARY}}",
    '\\input{|"touch {CANARY}"}',
    "\\openout1={CANARY}\\write1{x}\\closeout1",
    "\\text{__import__('os').system('touch {CANARY}')}",
    "\\operatorname{__import__}('os').\\operatorname{system}('touch {CANARY}')",
    "\\mathrm{exec}(\\text{open('{CANARY}','w')})",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "\\u005f\\u005fimport\\u005f\\u005f('os').system('touch {CANARY}')",
    "\uff45\uff58\uff45\uff43(\"open('{CANARY}','w')\")",  # full-width `exec`: NFKC makes it a Python name
    "__import__('pickle').loads(b\"cos\\nsystem\\n(S'touch {CANARY}'\\ntR.\")",
    "x.__class__.__mro__[-1].__subclasses__()",
    "\\def\\x{\\x}\\x",  # TeX macro that expands forever
    "\\newcommand{\\a}{\\a\\a}\\a",
]
IN_EVERY_CONTAINER = [0, 2, 3, 12, 15, 18, 22, 31]  # also tried as answer tag, after </think>, inline math


def build_rows() -> list[dict]:
    rows = []

    def add(kind, completion, answer="3", **extra):
        rows.append({"completion": completion, "answer": answer, "kind": kind, **extra})

    # --- code injection: never executed, never "correct"
    for payload in PAYLOADS:
        add("injection", f"\\boxed{{{payload}}}", "\\sqrt{2}")
    for i in IN_EVERY_CONTAINER:
        payload = PAYLOADS[i]
        add("injection", f"<answer>{payload}</answer>", "\\sqrt{2}")
        add("injection", f"<think>compute</think> {payload}", "\\sqrt{2}")
        add("injection", f"<think>compute</think> ${payload}$", "\\sqrt{2}")
    add("injection", "2**2**2**2**99", "3")  # Python's power operator, bare
    add("injection", "\\boxed{2**2**2**2**99}", "3")
    add("injection", "<answer>2**2**2**2**99</answer>", "3")
    # ... in the reference column too (a dataset is less hostile, but it is parsed the same way)
    add("injection", "\\boxed{1}", PAYLOADS[0])
    add("injection", "\\boxed{1}", "\\boxed{" + PAYLOADS[2] + "}")
    # a prose reference is judged by its last number (here one from the canary's path): not asserted
    add("injection", "\\boxed{" + PAYLOADS[0] + "}", PAYLOADS[0], math="any")
    add("injection", "\\boxed{" + PAYLOADS[4] + "}", PAYLOADS[3])

    # --- the worker's line protocol: JSON-escaped, a newline cannot start a second request
    add("protocol", '\\boxed{1"]\n["1", "1", 60]}', "\\sqrt{2}")
    add("protocol", '\\boxed{1}\n["1", "1", 60.0]\n', "\\sqrt{2}")
    add("protocol", '\\boxed{"], "t"]}\r\n\u2028\u2029\x1e', "\\sqrt{2}")
    add("protocol", "\\boxed{12}", '12"]\n["1", "1", 60]')

    # --- computations that hang sympy: the worker's time limit answers "wrong"
    for expression, answer in [
        ("2^{2^{2^{2^{99}}}}", "3"),
        ("10^{10^{10}}", "3"),
        ("10^{10^{10}} - 10^{10^{10}}", "0"),
        ("10^{10^{10}}", "10^{10^{10}}+1"),
        ("(10^{10^{10}})!", "3"),
        ("99999!", "3"),
        ("99999!!", "3"),
        ("(99999!)!", "3"),
        ("3!!!!", "3"),
        ("\\binom{10^9}{10^5}", "3"),
        ("9^{9^{9^{9}}}", "3"),
        ("\\sqrt[10^{10}]{2}", "1"),
        ("e^{e^{e^{99}}}", "3"),
        ("\\sum_{i=1}^{10^{10}} i", "3"),
        ("\\prod_{i=1}^{10^{6}} i", "3"),
        ("(x+1)^{100000}", "x"),
        ("(x+y+z)^{200} - (z+y+x)^{200}", "1"),
        ("\\int_0^1 e^{x^{99}} \\, dx", "3"),
        ("\\frac{d^{1000}}{dx^{1000}} x^{1000}", "3"),
        ("\\Gamma(10^{10})", "3"),
        ("\\sin(2^{2^{99}})", "0"),
        ("2^{2^{30}} \\bmod 7", "3"),
        ("10^{-10^{10}}", "0"),
        ("\\frac{10^{10^{6}}+1}{10^{10^{6}}+3}", "1"),
        ("(2^{2^{26}}+1)(2^{2^{26}}+3)", "3"),
        ("(10^{10^{6}}+1)^{16}", "3"),
        ("\\begin{pmatrix}1&1\\\\1&0\\end{pmatrix}^{10^{9}}", "3"),
        ("1e999999999", "3"),
        ("\\infty - \\infty", "0"),
        ("\\frac{0}{0}", "0"),
    ]:
        add("tower", f"\\boxed{{{expression}}}", answer)
    add("tower", "<think>x</think> 2^{2^{2^{2^{99}}}}", "3")
    add("tower", "<think>x</think> $2^{2^{2^{2^{99}}}}$", "3")
    add("tower", "\\boxed{2^{2^{2^{2^{99}}}}}", "2^{2^{2^{2^{99}}}}", math=2.0)  # identical: equal without sympy
    add("tower", "\\boxed{1}", "2^{2^{2^{2^{99}}}}")  # a hostile reference

    # --- deep nesting: over MAX_ANSWER_CHARS (1000) it is not parsed; under it the time limit holds
    frac_10k = _segments(("\\boxed{", 1), ("\\frac{", 10_000), ("1", 1), ("}{2}", 10_000), ("}", 1))
    add("nesting", frac_10k, "\\frac{1}{2}")
    add("nesting", _segments(("\\frac{", 10_000), ("1", 1), ("}{2}", 10_000)), "0")  # unboxed
    add("nesting", _segments(("<answer>", 1), ("\\frac{", 10_000), ("1", 1), ("}{2}", 10_000), ("</answer>", 1)), "0")
    add("nesting", "\\boxed{" + "\\frac{" * 90 + "1" + "}{2}" * 90 + "}", "0")  # 900 characters: parsed
    add("nesting", "\\boxed{" + "(" * 20 + "1" + ")" * 20 + "}", "\\frac{1}{3}")
    add("nesting", "\\boxed{" + "(" * 499 + "1" + ")" * 499 + "}", "\\frac{1}{3}")
    add("nesting", "\\boxed{" + "{" * 499 + "1" + "}" * 499 + "}", "\\frac{1}{3}")
    add("nesting", "\\boxed{" + "\\sqrt{" * 150 + "2" + "}" * 150 + "}", "1")
    add("nesting", "\\boxed{" + "2^{" * 240 + "2" + "}" * 240 + "}", "3")
    add("nesting", "\\boxed{" + "-" * 999 + "1}", "1")
    add("nesting", "\\boxed{" + "\\left(" * 100 + "1" + "\\right)" * 100 + "}", "\\frac{1}{3}")
    add("nesting", _segments(("(", 100_000), ("1", 1), (")", 100_000)), "1")
    add("boxed_nesting", _segments(("\\boxed{", 10_000), ("1", 1), ("}", 10_000)), "1")
    add("boxed_nesting", _gen("\\boxed{", 100_000), "1")  # never closed
    add("boxed_nesting", "\\boxed{\\boxed{\\boxed{12}}}", "12", math="any")
    add("boxed_nesting", _gen("\\boxed{12}", 100_000), "12", math=2.0)  # 1 MB of boxes; the last one is right

    # --- 1 MB strings and huge numbers
    add("huge", _gen("9", MB, prefix="\\boxed{", suffix="}"), "9")
    add("huge", _gen("9", MB, prefix="<think>x</think> "), "9")
    add("huge", _gen("a", MB), "1")
    add("huge", _gen(" ", MB, prefix="\\boxed", suffix="{1}"), "2")
    add("huge", _gen("1,", MB // 2), "1")
    add("huge", _gen("-", MB, suffix="1"), "1")
    add("huge", _gen("\\", MB, suffix="{"), "1")
    add("huge", _gen("1.", MB // 2, prefix="<answer>", suffix="</answer>"), "1")
    add("huge", "\\boxed{" + "9" * 999 + "}", "9" * 998 + "8")  # long integers: exact, no sympy
    add("huge", "\\boxed{" + "9" * 999 + "}", "9" * 999 + ".5")
    add("huge", "\\boxed{1" + "0" * 990 + "}", "10^{990}", math="any")
    add("huge", "\\boxed{" + "7" * 5000 + "}", "7" * 5000, math="any")  # identical, but over MAX_ANSWER_CHARS
    add("huge", "\\boxed{12}", _gen("1", MB))  # a 1 MB reference
    add("huge", "\\boxed{12}", _gen("\\frac{", 100_000))

    # --- unbalanced or stray braces
    for completion, answer in [
        ("\\boxed{1", "1"),
        ("\\boxed{{{{1}", "1"),
        ("\\boxed{1}}}}}", "2"),
        ("}}}}\\boxed{1", "1"),
        ("\\boxed}1{", "1"),
        ("\\boxed{\\}1}", "1"),
        ("\\boxed{1\\}", "1"),
        ("\\boxed{\\\\}12}", "12"),
        ("\\boxed{\\left\\{1\\right.}", "1"),
        ("<answer>\\frac{1}{2</answer>", "0.5"),
        ("<think>x</think> $\\frac{1}{$", "0.5"),
        ("<answer>}{</answer>", "1"),
        ("\\boxed{12}" + "}" * 1000, "13"),
    ]:
        add("braces", completion, answer)
    add("braces", _gen("{", 100_000, suffix="}"), "1")
    add("braces", _gen("}", 100_000, prefix="\\boxed{1"), "1", math=2.0)  # the box closes; the rest is stray
    add("braces", "<answer>\\frac{1}{2</answer>", "\\frac{1}{2", math=2.0)  # the same string as the reference
    add("braces", "\\boxed{2}", "\\frac{1}{2")

    # --- null bytes and control characters
    for completion, answer in [
        ("\\boxed{1\x002}", "12"),
        ("\x00" * 1000, "0"),
        ("\\boxed{\x00}", "0"),
        ("<think>\x00</think>\x00", "0"),
        ("\\boxed{1\b2}", "12"),
        ("\\boxed{\x1b[2J12}", "2"),
        ("\\boxed{\u202e21}", "12"),  # right-to-left override
        ("\\boxed{1\u200b2}", "12"),  # zero-width space
        ("\\boxed{1\u03052}", "12"),  # combining overline
        ("\\boxed{\ud800}", "1"),  # lone surrogate
        ("\\boxed{\udfff\ud800}", "\ud800"),
    ]:
        add("control", completion, answer)
    add("control", "\x00\\boxed{12}\x00", "12", math=2.0)  # a correct answer among null bytes
    add("control", "\\boxed{12}", "12\x00", math="any")
    add("control", "\ufeff<think>a</think> 12", "12", math=2.0)  # byte-order mark before the think block

    # --- look-alike digits (not ASCII digits: not equal to 12)
    for completion in [
        "\\boxed{\uff11\uff12}",  # full-width
        "\\boxed{\u0661\u0662}",  # Arabic-Indic
        "\\boxed{\u06f1\u06f2}",  # Eastern Arabic-Indic
        "\\boxed{\u0967\u0968}",  # Devanagari
        "\\boxed{\u00b9\u00b2}",  # superscripts
        "\\boxed{\u2081\u2082}",  # subscripts
        "\\boxed{\U0001d7cf\U0001d7d0}",  # mathematical bold
        "\\boxed{\u246b}",  # circled 12
        "\\boxed{\u216b}",  # Roman numeral twelve
        "\\boxed{1\uff12}",  # mixed
        "\\boxed{l2}",  # letter l
        "\\boxed{I2}",
        "<think>x</think> The answer is \uff11\uff12.",
        "<answer>\u0661\u0662</answer>",
    ]:
        add("lookalike", completion, "12")
    add("lookalike", "\\boxed{\uff11\uff12}", "\uff11\uff12", math=2.0)  # identical strings
    add("lookalike", "\\boxed{\u2212 12}", "-12", math="any")  # U+2212 minus sign
    add("lookalike", "\\boxed{\u0445}", "x")  # Cyrillic ha

    # --- empty and blank
    for completion in ["", " ", "\n\t\r ", "\\boxed{}", "\\boxed{ }", "<answer></answer>", "<think></think>", "$$",
                       "<think> </think>  ", "\\(\\)", "\\boxed"]:
        add("empty", completion, "0")
    add("empty", "\\boxed{0}", "", math=None)  # no reference: not applicable
    add("empty", "\\boxed{0}", None, math=None)
    add("empty", "\\boxed{0}", "   ", math=None)
    add("empty", "\\boxed{0}", "####   ", math=None)
    add("empty", "", None, math=None)

    # --- <think> / tag / delimiter spam
    add("think_spam", _gen("<think>", 100_000), "1")
    add("think_spam", _gen("</think>", 100_000, suffix="1"), "1", math=2.0)  # the text after the last </think>
    add("think_spam", _gen("<think>", 10_000, suffix="</think> 12"), "12", math=2.0)
    add("think_spam", _gen("<think>x</think>", 50_000, suffix=" 12"), "12", math=2.0)
    add("think_spam", _gen("<answer>", 100_000, suffix="</answer>"), "1")
    add("think_spam", _gen("</answer><answer>", 50_000), "1")
    add("think_spam", _gen("$", MB), "1")
    add("think_spam", _gen("$a", MB // 2), "1")
    add("think_spam", _gen("\\(", MB // 2, suffix="\\)"), "1")
    add("think_spam", _gen("<think>", 1000, prefix="<think>x</think> 12"), "12", math="any")

    # --- answers that try to cover several values
    for completion, math in [
        ("\\boxed{12 \\text{ or } 13}", 0.0),
        ("\\boxed{\\{12, 13\\}}", 0.0),
        ("\\boxed{12, 13}", 0.0),
        ("\\boxed{\\pm 12}", 0.0),
        ("\\boxed{12 \\lor 13}", 0.0),
        ("\\boxed{(-\\infty, \\infty)}", 0.0),
        ("\\boxed{\\mathbb{R}}", 0.0),
        ("\\boxed{x}", 0.0),
        ("\\boxed{\\infty}", 0.0),
        ("\\boxed{12} \\boxed{13}", 0.0),
        ("\\boxed{12 = 13}", 0.0),
        ("\\boxed{13 = 12}", "any"),  # math-verify compares the right-hand side of an equation
        ("\\boxed{12 \\text{ (or 13)}}", "any"),  # math-verify drops the parenthesised text
    ]:
        add("hedge", completion, "12", **({} if math == 0.0 else {"math": math}))

    # --- chat-message completions and odd reference types
    add("conversational", [], "1")
    add("conversational", [{"role": "assistant", "content": ""}], "1")
    add("conversational", [{"role": "assistant", "content": None}], "1")
    add("conversational", [{"role": "user", "content": "\\boxed{12}"}], "12")  # the prompt side does not count
    add("conversational", [{"role": "assistant", "content": [{"type": "text", "text": "\\boxed{12}"}]}], "12",
        math=2.0)
    add("conversational", [{"role": "assistant", "content": [{"type": "image"}, {"type": "text"}]}], "12")
    add("conversational", [{"role": "assistant", "content": "\\boxed{" + PAYLOADS[0] + "}"}], "1")
    add("reference", "\\boxed{12}", 12, math=2.0)
    add("reference", "\\boxed{0.5}", 0.5, math=2.0)
    add("reference", "\\boxed{True}", True, math=2.0)  # str(True) == "True": identical strings
    add("reference", "\\boxed{1}", [1, 2])
    return rows


# ------------------------------------------------------------------------------------------------ loading


def expand(value):
    """A generator marker → its string; anything else unchanged."""
    if not (isinstance(value, dict) and "generate" in value):
        return value
    if value["generate"] == "repeat":
        return value.get("prefix", "") + value["unit"] * value["count"] + value.get("suffix", "")
    if value["generate"] == "segments":
        return "".join(unit * count for unit, count in value["segments"])
    raise ValueError(f"unknown generator {value['generate']!r}")


def with_canary(value, canary: str):
    if isinstance(value, str):
        return value.replace("{CANARY}", canary)
    if isinstance(value, list):
        return [with_canary(v, canary) for v in value]
    if isinstance(value, dict):
        return {k: with_canary(v, canary) for k, v in value.items()}
    return value


def load_rows(canary: str) -> list[dict]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="ascii").splitlines()]
    for row in rows:
        row["completion"] = with_canary(expand(row["completion"]), canary)
        row["answer"] = with_canary(expand(row["answer"]), canary)
    return rows


def write_data_file() -> None:
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text("".join(json.dumps(row) + "\n" for row in build_rows()), encoding="ascii")


# ------------------------------------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def canary(tmp_path_factory):
    path = tmp_path_factory.mktemp("adversarial") / "pwned_canary"
    yield path
    assert not path.exists(), "a completion was executed: the canary file was created"


@pytest.fixture(scope="module")
def rows(canary):
    return load_rows(str(canary))


def text_reward(name):
    from rewards import get_reward
    from rewards.math_correctness import make_math_correctness

    if name == "math_correctness":
        return make_math_correctness(timeout_s=MATH_TIMEOUT_S)
    return get_reward(name)


def test_data_file_matches_build_rows():
    assert DATA.read_text(encoding="ascii") == "".join(json.dumps(row) + "\n" for row in build_rows()), (
        "tests/data/adversarial_completions.jsonl is out of date: run python tests/test_rewards_adversarial.py"
    )


def test_data_file_covers_the_issue(rows):
    assert len(rows) >= 100 and DATA.stat().st_size <= 3 * MB
    texts = [r["completion"] for r in rows if isinstance(r["completion"], str)]
    for needle in ["__import__", "2**2**2**2**99", "2^{2^{2^{2^{99}}}}", "10^{10^{10}}", "99999!", "\x00",
                   "\uff11", "\u0661", "\u00b9", "<think><think>"]:
        assert any(needle in t for t in texts), ascii(needle)
    assert any(len(r["completion"]) >= MB for r in rows)  # 1 MB strings
    assert any(isinstance(c := r["completion"], str) and c.count("\\frac{") >= 10_000 for r in rows)
    assert "" in [r["completion"] for r in rows]
    kinds = {r["kind"] for r in rows}
    assert {"injection", "tower", "nesting", "huge", "braces", "control", "lookalike", "empty", "think_spam"} <= kinds


def test_text_rewards_are_the_ones_tested():
    from rewards import list_rewards

    assert set(list_rewards()) - NOT_TEXT == set(TEXT_REWARDS)


@pytest.mark.parametrize("name", TEXT_REWARDS)
def test_every_text_reward_answers_every_row_within_1s(name, rows, canary):
    reward = text_reward(name)
    if name == "math_correctness":
        from rewards.math_worker import shared_worker

        shared_worker().equivalent("1", "1", 60.0)  # the worker's one-off start-up is not per completion
    failures, slowest = [], (0.0, None)
    for i, row in enumerate(rows):
        start = time.perf_counter()
        try:
            values = reward(prompts=["q"], completions=[row["completion"]], answer=[row["answer"]],
                            **TASK_COLUMNS.get(name, {}))
        except Exception as error:  # noqa: BLE001 - collected, reported below
            failures.append(f"row {i} ({row['kind']}): raised {error!r}")
            continue
        elapsed = time.perf_counter() - start
        slowest = max(slowest, (elapsed, i))
        if not (isinstance(values, list) and len(values) == 1):
            failures.append(f"row {i} ({row['kind']}): returned {values!r}")
            continue
        value = values[0]
        if not (value is None or type(value) is float):
            failures.append(f"row {i} ({row['kind']}): value {value!r}")
        if elapsed > PER_COMPLETION_S:
            failures.append(f"row {i} ({row['kind']}): {elapsed:.3f} s")
        if name == "math_correctness":
            expected = row.get("math", 0.0)
            if expected != "any" and value != expected:
                failures.append(f"row {i} ({row['kind']}): math_correctness {value!r}, expected {expected!r}")
        elif name in ALLOWED_VALUES:
            assert value in ALLOWED_VALUES[name], (i, value)
        else:
            assert 0.0 <= value < 1.0, (i, value)  # sudoku: no hostile completion solves the puzzle
        assert not canary.exists(), f"row {i} ({row['kind']}) was executed"
    print(f"{name}: slowest completion {slowest[0]:.3f} s (row {slowest[1]})")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", ["boxed_format", "think_format"])
def test_format_rewards_take_the_whole_file_as_one_batch(name, rows):
    """TRL calls a reward once per batch: one hostile completion must not break the others' values."""
    reward = text_reward(name)
    completions = [r["completion"] for r in rows]
    batched = reward(prompts=["q"] * len(rows), completions=completions, answer=[r["answer"] for r in rows])
    one_by_one = [reward(prompts=["q"], completions=[c])[0] for c in completions]
    assert batched == one_by_one


def test_the_registered_default_is_bounded_by_its_own_limit(rows):
    """The registered ``math_correctness`` (1.0 s per comparison): an exponent tower costs its limit, not more."""
    from rewards import get_reward
    from rewards.math_correctness import TIMEOUT_S

    reward = get_reward("math_correctness")
    towers = [r for r in rows if r["kind"] == "tower"][:2]
    for row in towers:
        start = time.perf_counter()
        assert reward(prompts=["q"], completions=[row["completion"]], answer=[row["answer"]]) == [0.0]
        assert time.perf_counter() - start < TIMEOUT_S + 0.25


if __name__ == "__main__":
    if "--check" in sys.argv:
        print(len(build_rows()), "rows")
    else:
        write_data_file()
        print(f"wrote {DATA} ({DATA.stat().st_size} bytes, {len(build_rows())} rows)")
