"""A small LRU of values over text prefixes: the one context cache every backend uses.

A search reads answers that extend each other (a beam, then its expansions). Whatever is
computed for an answer text -- a KV cache (:class:`~toolprm_agents.context.ContextStore`)
or the token ids a served model is sent (:class:`~toolprm_agents.backends.base.TokenContexts`)
-- is computed from the longest text already held, extended by the rest. :class:`PrefixLRU`
holds the last ``capacity`` such values (plus the root, the value of ``""``), finds the
longest stored prefix of a text and stores the extension. It is thread-safe; the
extension is computed outside its lock.

Example:
    >>> cache = PrefixLRU(root=[], capacity=2)
    >>> extend = lambda ids, rest: ids + [ord(c) for c in rest] if rest else None
    >>> cache.get("ab", extend)
    [97, 98]
    >>> cache.longest("abc")
    ('ab', [97, 98])
    >>> cache.get("abc", extend)             # only "c" is read
    [97, 98, 99]
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, TypeVar

__all__ = ["PrefixLRU"]

V = TypeVar("V")


class PrefixLRU(Generic[V]):
    """Values for texts, each computed from the value of its longest stored prefix.

    Args:
        root: the value of the empty text (always held, never evicted).
        capacity: how many other texts are held (least recently used go first).
    """

    def __init__(self, root: V, capacity: int = 8):
        self.root, self.capacity = root, capacity
        self._entries: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def longest(self, text: str) -> tuple[str, V]:
        """``(prefix, value)`` of the longest held text that ``text`` starts with (``("", root)`` if none)."""
        with self._lock:
            if text in self._entries:
                self._entries.move_to_end(text)
                return text, self._entries[text]
            base_text, base = "", self.root
            for key, value in self._entries.items():
                if len(key) > len(base_text) and text.startswith(key):
                    base_text, base = key, value
            return base_text, base

    def put(self, text: str, value: V) -> None:
        with self._lock:
            self._entries[text] = value
            self._entries.move_to_end(text)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def get(self, text: str, extend: Callable[[V, str], V | None]) -> V:
        """The value of ``text``: held, or ``extend(value of the longest prefix, rest of text)``.

        ``extend`` returns ``None`` when the rest adds nothing (e.g. no tokens); then the
        prefix's value is returned and nothing is stored.
        """
        base_text, base = self.longest(text)
        if base_text == text:
            return base
        value = extend(base, text[len(base_text):])
        if value is None:
            return base
        self.put(text, value)
        return value
