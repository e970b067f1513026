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
    return xgr.Grammar.from_ebnf("root ::= " + json.dumps(text, ensure_ascii=False))


# xgrammar's bounded string characters admit control characters, which JSON does not
_LOOSE_CHARS = '[^\\"\\\\\\r\\n]'
_JSON_CHARS = '[^\\0-\\x1f\\"\\\\]'


def _bound_numbers(ebnf: str) -> str:
    """Bound digit runs and open repetitions (numbers, "any" values) so every value ends."""
    ebnf = ebnf.replace("[1-9] [0-9]*", "[1-9] [0-9]{0,15}")
    ebnf = re.sub(r"\[eE\] (\S+) (\S+)\{1, -1\}", r"[eE] \1 \2{1, 2}", ebnf)  # exponents stay finite
    ebnf = ebnf.replace("{1, -1}", "{1, 12}")
    return ebnf.replace("{0, -1}", "{0, 15}")


def _value(schema: dict, where: str) -> xgr.Grammar:
    try:
        ebnf = str(xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False, strict_mode=True))
        return xgr.Grammar.from_ebnf(_bound_numbers(ebnf.replace(_LOOSE_CHARS, _JSON_CHARS)))
    except Exception as exc:  # xgrammar raises several types; name the argument
        raise GrammarError(f"{where}: cannot build a grammar for schema {json.dumps(schema)[:200]}: {exc}") from None


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
        compiled = self.compiler.compile_grammar(decision_grammar(decision))
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
