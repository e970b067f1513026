"""Grammars for single decisions: one small xgrammar grammar per open decision.

A decision's grammar is the union of its alternatives: a literal ``lead`` (a function
name, an argument name, a closing bracket) followed, for arguments, by a JSON value for
that argument's (bounded) schema. Compiled grammars are cached by decision key, so a
search compiles each distinct decision once.

Example:
    >>> grammars = DecisionGrammars(tokenizer, vocab_size=model.config.vocab_size)  # doctest: +SKIP
    >>> matcher = grammars.matcher(plan.decision(answer))                           # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict

import xgrammar as xgr

from .schema import ToolSpecError
from .steps import Alternative, Decision


class GrammarError(ToolSpecError):
    """A value schema could not be turned into a grammar."""


def _literal(text: str) -> xgr.Grammar:
    # ensure_ascii=False: a character outside the BMP written as a \u surrogate pair would
    # match its two surrogate halves, not the character itself
    # printed and read again the way the compiler does (an argument "é1" stays "é1", see _reparseable)
    return xgr.Grammar.from_ebnf(_reparseable(str(xgr.Grammar.from_ebnf("root ::= " + json.dumps(text, ensure_ascii=False)))))


# xgrammar's bounded string characters admit control characters, which JSON does not
_LOOSE_CHARS = '[^\\"\\\\\\r\\n]'
_JSON_CHARS = '[^\\0-\\x1f\\"\\\\]'


def _bound_numbers(ebnf: str) -> str:
    """Bound digit runs and open repetitions (numbers, "any" values) so every value ends."""
    ebnf = ebnf.replace("[1-9] [0-9]*", "[1-9] [0-9]{0,15}")
    ebnf = re.sub(r"\[eE\] (\S+) (\S+)\{1, -1\}", r"[eE] \1 \2{1, 2}", ebnf)  # exponents stay finite
    ebnf = ebnf.replace("{1, -1}", "{1, 12}")
    ebnf = ebnf.replace("{0, -1}", "{0, 15}")
    # a lower bound of 10 or more gives "[1-9] digit{n, -1}" (n >= 2): bound it as well
    return re.sub(r"\{(\d+), -1\}", lambda m: "{%s, %d}" % (m.group(1), max(int(m.group(1)), 15)), ebnf)


#: xgrammar's regex compiler fails on a repetition count above this ("Check failed")
MAX_REPEAT = 128
_QUANT = re.compile(r"\{(\d+)(,(\d*))?\}\??")


def split_repetitions(pattern: str) -> str:
    """``pattern`` with every repetition count above :data:`MAX_REPEAT` split into chunks.

    ``[a-z]{1,300}`` becomes ``[a-z]{1,128}[a-z]{0,128}[a-z]{0,44}`` (the same strings), which
    xgrammar compiles; an unbounded ``{200,}`` becomes ``{128}{72}`` and ``*``.
    """
    starts: dict[int, int] = {}  # end of an atom (a group, class, escape or character) in `text` -> its start
    groups: list[int] = []
    i, n = 0, len(pattern)
    text = ""
    while i < n:
        c = pattern[i]
        if c == "\\":
            j = i + 2
            if i + 1 < n and pattern[i + 1] in "pP" and j < n and pattern[j] == "{":
                j = pattern.find("}", j) + 1 or n
            elif i + 1 < n and pattern[i + 1] == "u":
                j = min(n, i + 6)
            elif i + 1 < n and pattern[i + 1] == "x":
                j = min(n, i + 4)
            start = len(text)
            text += pattern[i:j]
            starts[len(text)] = start
            i = j
            continue
        if c == "[":
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            j = min(n, j + 1)
            start = len(text)
            text += pattern[i:j]
            starts[len(text)] = start
            i = j
            continue
        if c == "(":
            groups.append(len(text))
            text += c
            i += 1
            continue
        if c == ")":
            start = groups.pop() if groups else 0
            text += c
            starts[len(text)] = start
            i += 1
            continue
        if c == "{":
            m = _QUANT.match(pattern, i)
            if m and text:
                lo = int(m.group(1))
                hi = lo if m.group(2) is None else (None if m.group(3) == "" else int(m.group(3)))
                if lo > MAX_REPEAT or (hi is not None and hi > MAX_REPEAT):
                    a = starts.get(len(text), len(text) - 1)
                    atom = text[a:]
                    chunks = []
                    while lo > 0 or (hi is not None and hi > 0):
                        x = min(lo, MAX_REPEAT)
                        y = MAX_REPEAT if hi is None else min(hi, MAX_REPEAT)
                        if hi is None and lo <= MAX_REPEAT:
                            y = x
                        chunks.append(atom + ("{%d}" % x if x == y else "{%d,%d}" % (x, y)))
                        lo -= x
                        if hi is not None:
                            hi -= y
                        if hi is None and lo == 0:
                            break
                    if hi is None:
                        chunks.append(atom + "*")
                    text = text[:a] + "(?:" + "".join(chunks) + ")"
                    starts[len(text)] = a
                    i = m.end()
                    continue
            if m:
                text += m.group(0)
                i = m.end()
                continue
        start = len(text)
        text += c
        if c not in "*+?|^$":
            starts[len(text)] = start
        i += 1
    return text


_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SCHEMA_ONE = ("items", "additionalProperties", "not", "contains")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


# one character: a class, ".", an escape like \d or \w, or a plain character
_ONE_CHAR = r"(\[(?:\\.|[^\]\\])+\]|\.|\\[dDwWsS]|[^\\()\[\]{}|*+?.^$])"
_SIMPLE = re.compile(r"\^" + _ONE_CHAR + r"(\*|\+|\{(\d+)(?:,(\d*))?\})\$")


def _lengths_into_pattern(schema: dict) -> dict:
    """xgrammar ignores ``minLength``/``maxLength`` next to a ``pattern``; for a pattern of one
    repeated character (``^[a-z]+$``) the lengths go into its repetition count instead."""
    if "minLength" not in schema and "maxLength" not in schema:
        return schema
    m = _SIMPLE.fullmatch(schema["pattern"])
    if m is None:
        return schema  # the search drops a value of the wrong length (StepPlan.rejects)
    atom, quant, lo, hi = m.group(1), m.group(2), m.group(3), m.group(4)
    if quant == "*":
        p_lo, p_hi = 0, None
    elif quant == "+":
        p_lo, p_hi = 1, None
    else:
        p_lo, p_hi = int(lo), (int(lo) if hi is None else (None if hi == "" else int(hi)))
    lo_n = max(p_lo, schema.get("minLength", 0))
    caps = [v for v in (p_hi, schema.get("maxLength")) if v is not None]
    hi_n = min(caps) if caps else None
    if hi_n is not None and lo_n > hi_n:
        return schema  # no value fits: xgrammar's own error says so
    out = {k: v for k, v in schema.items() if k not in ("minLength", "maxLength")}
    out["pattern"] = "^" + atom + ("{%d,}" % lo_n if hi_n is None else "{%d,%d}" % (lo_n, hi_n)) + "$"
    return out


def _split_patterns(schema):
    """A copy of ``schema`` whose ``pattern`` keywords went through :func:`split_repetitions`
    (and :func:`_lengths_into_pattern`)."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if isinstance(out.get("pattern"), str):
        out = _lengths_into_pattern(out)
        out["pattern"] = split_repetitions(out["pattern"])
    for key in _SCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {k: _split_patterns(v) for k, v in out[key].items()}
    for key in _SCHEMA_ONE:
        if isinstance(out.get(key), dict):
            out[key] = _split_patterns(out[key])
    for key in _SCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [_split_patterns(v) for v in out[key]]
    return out


_HEX = frozenset("0123456789abcdefABCDEF")


def _reparseable(ebnf: str) -> str:
    """xgrammar's printed grammar in a form its parser (and its compiler, which prints and
    reads a grammar again) reads back as the same grammar.

    xgrammar prints U+0080..U+00FF as ``\\x80`` and reads ``\\x`` greedily, so an enum value
    U+0080 followed by "0" came back as U+0800. Inside a literal such a character is ended
    there (``"\\x80" "0"``), which survives any number of printings.
    """
    out: list[str] = []
    i, n, state = 0, len(ebnf), None  # state: None, '"' (in a literal) or '[' (in a class)
    while i < n:
        c = ebnf[i]
        if c == "\\" and state is not None:
            if ebnf[i + 1 : i + 2] == "x" and len(ebnf[i + 2 : i + 4]) == 2 and set(ebnf[i + 2 : i + 4]) <= _HEX:
                code = ebnf[i + 2 : i + 4]
                i += 4
                split = state == '"' and ebnf[i : i + 1] in _HEX and ebnf[i : i + 1] != ""
                out.append(f"\\u00{code}" + ('" "' if split else ""))
                continue
            out.append(ebnf[i : i + 2])
            i += 2
            continue
        if state is None and c in '"[':
            state = c
        elif (state == '"' and c == '"') or (state == "[" and c == "]"):
            state = None
        out.append(c)
        i += 1
    return "".join(out)


def _value(schema: dict, where: str) -> xgr.Grammar:
    try:
        ebnf = str(xgr.Grammar.from_json_schema(json.dumps(_split_patterns(schema)), any_whitespace=False, strict_mode=True))
        return xgr.Grammar.from_ebnf(_bound_numbers(_reparseable(ebnf).replace(_LOOSE_CHARS, _JSON_CHARS)))
    except Exception as exc:  # xgrammar raises several types; name the argument
        raise GrammarError(f"{where}: cannot build a grammar for schema {json.dumps(schema)[:200]}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """xgrammar's message without its ``[12:00:00] /project/cpp/file.cc:123:`` prefix, on one line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return re.sub(r"^\[[\d:]+\] \S+:\d+: (Check failed: )?", "", text)[:300]


def alternative_grammar(alt: Alternative) -> xgr.Grammar:
    lead = _literal(alt.lead)
    if alt.value_schema is None:
        return lead
    return xgr.Grammar.concat(lead, _value(alt.value_schema, f"tool {alt.function!r}: argument {alt.arg!r}"))


def decision_grammar(decision: Decision) -> xgr.Grammar:
    grammars = [alternative_grammar(a) for a in decision.alternatives]
    return grammars[0] if len(grammars) == 1 else xgr.Grammar.union(*grammars)


class DecisionGrammars:
    """Compiles and caches decision grammars for one tokenizer (thread-safe)."""

    def __init__(self, tokenizer, *, vocab_size: int | None = None, cache_size: int = 512):
        self.tokenizer_info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self.compiler = xgr.GrammarCompiler(self.tokenizer_info, max_threads=1)
        self.stop_token_ids = list(self.tokenizer_info.stop_token_ids)
        self._cache: OrderedDict[tuple, xgr.CompiledGrammar] = OrderedDict()
        self._size = cache_size
        self._lock = threading.Lock()

    def compiled(self, decision: Decision) -> xgr.CompiledGrammar:
        key = decision.key + tuple(json.dumps(a.value_schema, sort_keys=True) for a in decision.alternatives)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        grammar = decision_grammar(decision)
        try:
            compiled = self.compiler.compile_grammar(grammar)
        except Exception as exc:  # xgrammar's compiler raises RuntimeError ("Check failed") on some schemas
            where = ", ".join(f"tool {a.function!r}" + (f" argument {a.arg!r}" if a.arg else "") for a in decision.alternatives if a.value_schema is not None)
            raise GrammarError(f"{where or 'a decision'}: xgrammar cannot compile the value grammar: {_reason(exc)}") from None
        with self._lock:
            self._cache[key] = compiled
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return compiled

    def matcher(self, decision: Decision) -> xgr.GrammarMatcher:
        return xgr.GrammarMatcher(self.compiled(decision))


# public names for the grammar pieces the served backends build requests from (backends/steps.py)
literal_grammar = _literal
value_grammar = _value
