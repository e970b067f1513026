"""What a serving backend is asked for one decision: prompt continuation, grammar, post-processing.

A served model (vLLM in-process or behind an OpenAI-compatible endpoint) samples under a
grammar given as text with the request and stops when the grammar is complete. The
embedded :class:`~toolprm_agents.policy.TransformersPolicy` steers token by token
instead; :class:`StepRequest` is the equivalent built once per decision:

* ``jump`` -- the text the grammar forces at the start of the step (the literal leads'
  common prefix, and for a decision with a single argument left, the value's forced
  opening such as the ``"`` of a string). It is appended to the prompt, not sampled, as
  the transformers backend does; ``grammar`` covers only what follows it.
* ``follow`` -- where a step ends, the model writes the end together with what follows:
  a number has no end of its own, and a string or a function name ends with merged tokens
  such as ``",`` and ``"}`` (SmolLM2 gives the bare ``"`` a fifth of the mass of "the
  value ends here"). The transformers backend folds those tokens into the end of the step.
  A served model cannot fold tokens into the stop token, so the grammar requires one
  more character after every argument value (from ``Decision.follow``: ``,`` or ``}``)
  and after a function name (``,``, the start of ``, "arguments": {``);
  :meth:`StepRequest.finish` strips it. Merged tokens that carry more than one following
  character (``"},``) are still not allowed by the grammar.
* ``grammar`` -- xgrammar EBNF (``str(xgr.Grammar)``), what vLLM's xgrammar backend
  compiles from ``structured_outputs={"grammar": ...}``.

Example:
    >>> builder = StepRequestBuilder()
    >>> req = builder.request(plan, answer)        # doctest: +SKIP
    >>> req.jump, req.grammar[:30]                 # doctest: +SKIP
    ('"city": "', 'root ::= ...')
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import xgrammar as xgr

from ..grammar import literal_grammar, value_grammar
from ..steps import Alternative, Decision, PartialAnswer, Step, StepKind, StepParseError, StepPlan

__all__ = ["StepRequest", "StepRequestBuilder", "may_be_number", "value_derivative"]


def may_be_number(schema: dict | None) -> bool:
    """Whether a value of ``schema`` may be a JSON number (the only value with no end of its own)."""
    if schema is None:
        return False
    if not isinstance(schema, dict) or not schema:
        return True  # any value
    if "const" in schema:
        return isinstance(schema["const"], (int, float)) and not isinstance(schema["const"], bool)
    if "enum" in schema:
        return any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return any(may_be_number(s) for s in schema[key])
    types = schema.get("type")
    if types is None:
        return not any(k in schema for k in ("properties", "items", "maxLength", "minLength", "pattern"))
    types = types if isinstance(types, list) else [types]
    return "number" in types or "integer" in types


# ------------------------------------------------------------------------------------------
# the derivative of a value grammar by a forced prefix (on xgrammar's printed EBNF)

_TOKEN = re.compile(
    r'\s*(?:(?P<lit>"(?:[^"\\]|\\.)*")|(?P<cls>\[(?:[^\]\\]|\\.)*\])|(?P<quant>\{[^}]*\}|[*+?])'
    r"|(?P<look>\(=)|(?P<open>\()|(?P<close>\))|(?P<bar>\|)|(?P<name>[A-Za-z_][A-Za-z0-9_]*))"
)


class _Unsupported(Exception):
    pass


def _tokens(body: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(body):
        if body[pos:].strip() == "":
            break
        m = _TOKEN.match(body, pos)
        if not m:
            raise _Unsupported(body[pos:pos + 20])
        out.append((m.lastgroup, m.group(m.lastgroup)))
        pos = m.end()
    return out


def _parse_choices(toks, i):
    """choices := seq ('|' seq)*; returns (list of sequences, next index). An item is (kind, text)."""
    choices, seq = [], []
    while i < len(toks):
        kind, text = toks[i]
        if kind == "bar":
            choices.append(seq)
            seq, i = [], i + 1
        elif kind == "close":
            break
        elif kind in ("open", "look"):
            inner, j = _parse_choices(toks, i + 1)
            if j >= len(toks) or toks[j][0] != "close":
                raise _Unsupported("unbalanced parentheses")
            seq.append(("look" if kind == "look" else "group", inner))
            i = j + 1
        elif kind == "quant":
            if not seq:
                raise _Unsupported("quantifier without an element")
            seq.append(("quant", text))
            i += 1
        else:
            seq.append((kind, text))
            i += 1
    choices.append(seq)
    return choices, i


def _print_item(it) -> str:
    kind, val = it
    if kind == "group":
        return "(" + _print(val) + ")"
    if kind == "look":
        return "(=" + _print(val) + ")"
    return val


def _print_seq(seq) -> str:
    if not seq:
        return '""'
    parts: list[str] = []
    for it in seq:
        if it[0] == "quant":
            parts[-1] += it[1]
        else:
            parts.append(_print_item(it))
    return " ".join(parts)


def _print(choices) -> str:
    return " | ".join("(" + _print_seq(s) + ")" for s in choices)


_ESC = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "0": "\0", "/": "/", "'": "'"}


def _unescape(lit: str) -> str:
    s, out, i = lit[1:-1], [], 0
    while i < len(s):
        c = s[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = s[i + 1]
        if e in _ESC:
            out.append(_ESC[e])
            i += 2
        elif e == "x":
            out.append(chr(int(s[i + 2:i + 4], 16)))
            i += 4
        elif e == "u":
            out.append(chr(int(s[i + 2:i + 6], 16)))
            i += 6
        else:
            raise _Unsupported(f"escape \\{e}")
    return "".join(out)


def _strip_seq(seq, prefix: str):
    """``seq`` without ``prefix`` at its start; None if ``seq`` cannot start with it."""
    seq = list(seq)
    while prefix:
        if not seq:
            return None
        kind, val = seq[0]
        followed_by_quant = len(seq) > 1 and seq[1][0] == "quant"
        if kind == "lit" and not followed_by_quant:
            text = _unescape(val)
            if prefix.startswith(text):
                prefix = prefix[len(text):]
                seq.pop(0)
                continue
            if text.startswith(prefix):
                seq[0] = ("lit", json.dumps(text[len(prefix):], ensure_ascii=False))
                return seq
            return None
        if kind == "group" and not followed_by_quant:
            if len(val) != 1:
                raise _Unsupported("a choice group at the start")
            seq = list(val[0]) + seq[1:]
            continue
        raise _Unsupported(f"{kind} at the start")
    return seq


def value_derivative(ebnf: str, prefix: str) -> str | None:
    """The EBNF of the value grammar ``ebnf`` for text after ``prefix`` (None: not derivable).

    Handles root rules whose choices start with literals (strings, enums, arrays, objects
    as xgrammar writes them); anything else gives None and the caller does not jump.
    """
    if not prefix:
        return ebnf
    lines = ebnf.splitlines()
    idx = [i for i, line in enumerate(lines) if line.startswith("root ::= ")]
    if len(idx) != 1:
        return None
    body = lines[idx[0]][len("root ::= "):]
    try:
        choices, end = _parse_choices(_tokens(body), 0)
        if len(choices) == 1 and len(choices[0]) == 1 and choices[0][0][0] == "group":
            choices = choices[0][0][1]  # the outer parentheses
        kept = [s for s in (_strip_seq(c, prefix) for c in choices) if s is not None]
    except (_Unsupported, ValueError, IndexError):
        return None
    if not kept:
        return None
    lines[idx[0]] = "root ::= (" + _print(kept) + ")"
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepRequest:
    """One decision, as a served model is asked for it.

    ``jump``: text appended to the prompt (forced by the grammar); ``grammar``: EBNF for the
    text after it; ``complete``: the step text when nothing is left to generate (then no
    request is needed); ``follow``: characters that may end the generated text and are
    stripped (see the module docstring).
    """

    jump: str
    grammar: str | None
    complete: str | None = None
    follow: str = ""

    def finish(self, plan: StepPlan, answer: PartialAnswer, generated: str) -> Step:
        """The step for text generated after ``jump`` (raises :class:`StepParseError`)."""
        text = self.jump + generated
        try:
            return plan.parse(answer, text)
        except StepParseError:
            if self.follow and text and text[-1] in self.follow:
                return plan.parse(answer, text[:-1])
            raise


def _common_prefix(texts: Sequence[str]) -> str:
    first, last = min(texts), max(texts)
    n = 0
    while n < len(first) and n < len(last) and first[n] == last[n]:
        n += 1
    return first[:n]


class StepRequestBuilder:
    """Builds (and caches) :class:`StepRequest` objects for decisions; thread-safe."""

    def __init__(self, cache_size: int = 512):
        # grammar analysis only (jump-forward strings): any vocabulary will do
        info = xgr.TokenizerInfo(["<stop>"] + [chr(i) for i in range(32, 127)], stop_token_ids=[0])
        self._compiler = xgr.GrammarCompiler(info, max_threads=1)
        self._cache: OrderedDict[tuple, StepRequest] = OrderedDict()
        self._size = cache_size
        self._lock = threading.Lock()

    def request(self, plan: StepPlan, answer: PartialAnswer) -> StepRequest:
        decision = plan.decision(answer)
        key = decision.key + (decision.follow,) + tuple(json.dumps(a.value_schema, sort_keys=True) for a in decision.alternatives)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        req = self.build(decision)
        with self._lock:
            self._cache[key] = req
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return req

    def _value_jump(self, value: xgr.Grammar) -> str:
        matcher = xgr.GrammarMatcher(self._compiler.compile_grammar(value))
        jump = matcher.find_jump_forward_string()
        # xgrammar can report a forced string its grammar rejects (U+0080 then "0" as U+0800)
        return jump if not jump or matcher.accept_string(jump) else ""

    def build(self, decision: Decision) -> StepRequest:
        alts = decision.alternatives
        jump = _common_prefix([a.lead for a in alts]) if len(alts) > 1 else alts[0].lead
        jump = jump[: min(len(a.lead) for a in alts)]
        follow_chars = decision.follow
        parts: list[xgr.Grammar] = []
        needs_follow = ""
        if len(alts) == 1 and alts[0].value_schema is not None:
            alt = alts[0]
            value = value_grammar(alt.value_schema, f"tool {alt.function!r}: argument {alt.arg!r}")
            extra = self._value_jump(value)
            derived = value_derivative(str(value), extra) if extra else None
            if derived is not None:
                jump += extra
                if re.search(r'^root ::= \(\(""\)\)$', derived, re.M) and not (follow_chars and may_be_number(alt.value_schema)):
                    return StepRequest(jump, None, complete=jump)
                value = xgr.Grammar.from_ebnf(derived)
            parts.append(self._with_follow(value, self._follow_of(alt, follow_chars)))
            needs_follow = self._follow_of(alt, follow_chars)
        else:
            for alt in alts:
                rest = alt.lead[len(jump):]
                pieces = [literal_grammar(rest)] if rest else []
                if alt.value_schema is not None:
                    pieces.append(value_grammar(alt.value_schema, f"tool {alt.function!r}: argument {alt.arg!r}"))
                if not pieces:
                    pieces = [xgr.Grammar.from_ebnf('root ::= ""')]
                g = pieces[0] if len(pieces) == 1 else xgr.Grammar.concat(*pieces)
                chars = self._follow_of(alt, follow_chars)
                parts.append(self._with_follow(g, chars))
                needs_follow = "".join(sorted(set(needs_follow + chars)))
        grammar = parts[0] if len(parts) == 1 else xgr.Grammar.union(*parts)
        return StepRequest(jump, str(grammar), follow=needs_follow)

    @staticmethod
    def _follow_of(alt: Alternative, follow_chars: str) -> str:
        """The characters that may follow ``alt``'s text in the grammar (stripped again by ``finish``)."""
        if alt.value_schema is not None:
            return follow_chars
        if alt.kind is StepKind.FUNC_NAME and alt.tail:
            return alt.tail[0]
        return ""

    @staticmethod
    def _with_follow(g: xgr.Grammar, chars: str) -> xgr.Grammar:
        if not chars:
            return g
        ends = " | ".join(json.dumps(c) for c in chars)
        return xgr.Grammar.concat(g, xgr.Grammar.from_ebnf(f"root ::= ({ends})"))
