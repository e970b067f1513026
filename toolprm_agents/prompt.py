"""Prompts: conversations and tool specs rendered into the text a model reads.

SmolLM2's chat template ignores ``tools=``, so the tool specs are rendered into the
system message here; the answer format (a JSON list of calls) is stated there too. The
rendered prompt ends where the assistant's answer starts; the answer text
(``[{"name": ...``) follows it directly.

Example:
    >>> fmt = PromptFormat()
    >>> msgs = normalize_messages("What's the weather in Paris?")
    >>> text = fmt.render(tokenizer, msgs, tools)  # doctest: +SKIP
"""

from __future__ import annotations

from .errors import ToolPRMError

import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

from .schema import ToolSpec

DEFAULT_SYSTEM = (
    "You are an expert in composing function calls. You are given a question and a set of "
    "possible functions. Based on the question, make one or more function calls to achieve "
    "the purpose. If none of the functions can be used, answer with an empty list.\n"
    "Answer with a JSON list of calls, each "
    '{{"name": <function name>, "arguments": {{<argument name>: <value>, ...}}}}, and nothing else.\n'
    "Here is a list of functions in JSON format that you can invoke:\n{tools}"
)

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class MessageError(ToolPRMError, ValueError):
    """A conversation message could not be understood."""


def normalize_messages(messages: Any) -> list[dict[str, str]]:
    """Turn a question, OpenAI-style dicts or LangChain messages into ``[{"role", "content"}]``.

    Assistant tool calls become the answer format (a JSON list of calls) and tool
    results become ``tool`` messages, so a multi-turn agent conversation reads the same
    way the model writes it.
    """
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, Sequence) or isinstance(messages, (bytes, dict)):
        raise MessageError(f"messages must be a string or a list of messages, not {type(messages).__name__}")
    out: list[dict[str, str]] = []
    for i, m in enumerate(messages):
        out.append(_one_message(m, i))
    if not out:
        raise MessageError("the conversation is empty: give at least one user message")
    if not any(m["role"] == "user" and m["content"].strip() for m in out):
        raise MessageError(
            "the conversation has no user request (no user message with text): a call made up from "
            "a system or assistant message alone would answer nothing"
        )
    return out


_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "user": "user", "assistant": "assistant", "function": "tool"}


def _one_message(m: Any, i: int) -> dict[str, str]:
    if hasattr(m, "type") and hasattr(m, "content"):  # LangChain BaseMessage
        # ChatMessage (type "chat") carries its role itself
        kind = getattr(m, "role", "") if m.type == "chat" else m.type
        role = _ROLES.get(kind) if isinstance(kind, str) else None
        content = _text_of(m.content, i)
        calls = _calls_list(getattr(m, "tool_calls", None), i)
        if calls:
            content = (content + "\n" if content else "") + json.dumps(
                [{"name": _call_name(c, i), "arguments": _call_args(c.get("args"), i, c.get("name"))} for c in calls],
                ensure_ascii=False,
            )
    elif isinstance(m, dict):
        kind = m.get("role", "")
        role = _ROLES.get(kind) if isinstance(kind, str) else None
        content = _text_of(m.get("content"), i)
        calls = _calls_list(m.get("tool_calls"), i)
        if calls:
            rendered = []
            for c in calls:
                fn = c.get("function", c)
                if not isinstance(fn, dict):
                    raise MessageError(f"message {i}: a tool call's 'function' must be an object, not {type(fn).__name__}")
                args = fn.get("arguments", fn.get("args", {}))
                if isinstance(args, str):
                    try:
                        args = json.loads(args or "{}")
                    except json.JSONDecodeError as exc:
                        raise MessageError(f"message {i}: the arguments of tool call {fn.get('name')!r} are not JSON: {exc}") from None
                rendered.append({"name": _call_name(fn, i), "arguments": _call_args(args, i, fn.get("name"))})
            content = (content + "\n" if content else "") + json.dumps(rendered, ensure_ascii=False)
    else:
        raise MessageError(f"message {i} is a {type(m).__name__}; expected a dict with 'role' and 'content' or a LangChain message")
    if role is None:
        what = (getattr(m, "role", None) or m.type) if hasattr(m, "type") else m.get("role")
        raise MessageError(f"message {i} has an unknown role {what!r}")
    try:
        content.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MessageError(
            f"message {i}: the text is not valid Unicode (a lone surrogate {content[exc.start]!r} at character "
            f"{exc.start}; invalid UTF-8 read with surrogateescape gives these): fix the text's encoding"
        ) from None
    return {"role": role, "content": content}


def _text_of(parts: Any, i: int) -> str:
    """Message content: text, ``None`` (no text) or a list of text parts (OpenAI/LangChain)."""
    if parts is None:
        return ""
    if isinstance(parts, str):
        return parts
    if isinstance(parts, (list, tuple)):
        out = []
        for p in parts:
            if isinstance(p, str):
                out.append(p)
            elif isinstance(p, dict) and isinstance(p.get("text", ""), str):
                out.append(p.get("text", ""))  # non-text parts (images) carry no text
            else:
                raise MessageError(f"message {i}: a content part must be text or a {{'type': 'text', 'text': ...}} object, not {_short(p)}")
        return "".join(out)
    raise MessageError(f"message {i}: content must be text or a list of text parts, not {type(parts).__name__} {_short(parts)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _calls_list(calls: Any, i: int) -> list[dict]:
    if not calls:
        return []
    if not isinstance(calls, (list, tuple)) or not all(isinstance(c, dict) for c in calls):
        raise MessageError(f"message {i}: 'tool_calls' must be a list of call objects, not {_short(calls)}")
    return list(calls)


def _call_name(call: dict, i: int) -> str:
    name = call.get("name")
    if not isinstance(name, str) or not name:
        raise MessageError(f"message {i}: a tool call has no function name (got {_short(call)})")
    return name


def _call_args(args: Any, i: int, name: Any) -> dict:
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise MessageError(f"message {i}: the arguments of tool call {name!r} must be an object, not {_short(args)}")
    return args


def render_tools(tools: Sequence[ToolSpec]) -> str:
    """Tool specs as the JSON list the system prompt shows."""
    return json.dumps(
        [{"name": t.name, "description": t.description, "parameters": t.to_json_schema()} for t in tools],
        ensure_ascii=False,
    )


@dataclass(frozen=True)
class PromptFormat:
    """How a conversation and its tools become prompt text (configurable per model).

    ``system`` is a template with a ``{tools}`` slot; a system message in the
    conversation is appended to it. ``chat_template`` overrides the tokenizer's own (a
    tokenizer without one gets ChatML).
    """

    system: str = DEFAULT_SYSTEM
    chat_template: str | None = None

    def render(self, tokenizer, messages: Sequence[dict[str, str]], tools: Sequence[ToolSpec]) -> str:
        system = self.system.format(tools=render_tools(tools))
        rest = list(messages)
        if rest and rest[0]["role"] == "system":
            system = system + "\n\n" + rest[0]["content"]
            rest = rest[1:]
        chat = [{"role": "system", "content": system}] + rest
        template = self.chat_template or getattr(tokenizer, "chat_template", None) or CHATML
        return render_chat(tokenizer, chat, template)


# ------------------------------------------------------------------------------------------
# content is text: only the chat template's own markers are special tokens


class PromptText(str):
    """Rendered prompt text that knows which of its characters came from message content.

    ``text_spans`` are ``(start, end)`` character ranges of message content (user, tool,
    assistant and system text, tool specs). :func:`encode_prompt` tokenises them as text,
    so content that spells a control token (``<|im_end|>``) cannot open a turn of its own.
    Slicing or concatenating gives a plain ``str`` (then every special string is live).
    """

    text_spans: tuple[tuple[int, int], ...] = ()

    def __new__(cls, text: str, text_spans=()):
        obj = super().__new__(cls, text)
        obj.text_spans = tuple(text_spans)
        return obj


def render_chat(tokenizer, chat: Sequence[dict[str, Any]], template: str | None = None) -> PromptText:
    """``tokenizer.apply_chat_template`` (no tokenising, generation prompt added) as a :class:`PromptText`.

    The template is rendered with a unique placeholder for each message's content; the
    content is put back and its character ranges recorded. A template that rewrites
    content (``| trim``) is rendered again with the real text, and the content is found in
    it in order (the template's text before each content is skipped over first).
    """
    template = template or getattr(tokenizer, "chat_template", None) or CHATML
    chat = [dict(m) for m in chat]
    contents = [m.get("content") if isinstance(m.get("content"), str) else "" for m in chat]
    nonce = "\ue000%x\ue001" % (id(chat) & 0xFFFFFF)
    marks = [f"{nonce}{i}\ue002" for i in range(len(chat))]
    marked = [{**m, "content": marks[i]} for i, m in enumerate(chat)]
    kw = dict(chat_template=template, tokenize=False, add_generation_prompt=True)
    skeleton = tokenizer.apply_chat_template(marked, **kw)
    pieces = re.split("(" + re.escape(nonce) + r"\d+\ue002)", skeleton)
    out, spans, pos = [], [], 0
    for k, piece in enumerate(pieces):
        if k % 2:
            text = contents[int(piece[len(nonce):-1])]
            spans.append((pos, pos + len(text)))
        else:
            text = piece
        out.append(text)
        pos += len(text)
    text = "".join(out)
    real = tokenizer.apply_chat_template(chat, **kw)
    if text != real:  # the template changed the content: find it in the real rendering
        spans, pos = [], 0
        for content in contents:
            if not content:
                continue
            at = real.find(content, pos)
            if at < 0:
                at = real.find(content.strip(), pos)
                content = content.strip()
            if at < 0 or not content:
                continue
            spans.append((at, at + len(content)))
            pos = at + len(content)
        text = real
    return PromptText(text, spans)


_SPECIALS: dict[int, tuple[object, tuple[str, ...]]] = {}


def special_strings(tokenizer) -> tuple[str, ...]:
    """The texts of the tokenizer's special tokens (``<|im_start|>``, ``<|im_end|>`` ...)."""
    key = id(tokenizer)
    hit = _SPECIALS.get(key)
    if hit is not None and hit[0] is tokenizer:
        return hit[1]
    found = set(getattr(tokenizer, "all_special_tokens", None) or [])
    for tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(tok, "special", False):
            found.add(str(getattr(tok, "content", tok)))
    out = tuple(sorted((s for s in found if isinstance(s, str) and s), key=len, reverse=True))
    _SPECIALS[key] = (tokenizer, out)
    return out


def _ids(tokenizer, text: str, *, as_text: bool) -> list[int]:
    if not text:
        return []
    if as_text:
        try:
            return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])
        except TypeError:  # a tokenizer without split_special_tokens
            pass
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_parts(tokenizer, parts: Sequence[tuple[str, bool]]) -> list[int]:
    """Token ids of ``parts``, each ``(text, is_content)``: a special-token string in content is text.

    When no content part spells a special token the parts are tokenised together, exactly
    as the joined text always was; otherwise each run is tokenised on its own, content with
    its special-token strings split into ordinary tokens.
    """
    specials = special_strings(tokenizer)
    if not any(is_content and any(s in text for s in specials) for text, is_content in parts):
        return _ids(tokenizer, "".join(text for text, _ in parts), as_text=False)
    ids: list[int] = []
    for text, is_content in parts:
        ids += _ids(tokenizer, text, as_text=is_content)
    return ids


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Token ids of prompt text: a :class:`PromptText`'s content spans are text, the rest as written."""
    spans = getattr(text, "text_spans", ())
    parts, pos = [], 0
    for a, b in spans:
        if a < pos:
            continue
        parts += [(text[pos:a], False), (text[a:b], True)]
        pos = b
    parts.append((text[pos:], False))
    return encode_parts(tokenizer, [p for p in parts if p[0]])


#: what control tokens look like (ChatML, Llama, Mistral), for text sent to a server as text
_CONTROL_LIKE = re.compile(r"<\|[^<>|\s]{1,40}\|>|</?s>|\[/?INST\]")


def refuse_control_text(text: str, where: str) -> None:
    """Raise :class:`MessageError` if message content in ``text`` (a :class:`PromptText`) spells
    what looks like a control token. For prompts sent as text to a server whose tokenizer is
    not here: the server would read them as control tokens, and nothing here can stop it."""
    for a, b in getattr(text, "text_spans", ()):
        found = _CONTROL_LIKE.search(text, a, b)
        if found:
            raise MessageError(
                f"{where}: message text spells a control token ({found.group(0)!r}) and the served model's "
                "tokenizer is not available here to keep it text; give the policy its tokenizer (tokenizer=...)"
            )


def encode_text(tokenizer, text: str, suffix: str = "") -> list[int]:
    """Token ids of answer text (every character is text), then ``suffix`` template text as written."""
    return encode_parts(tokenizer, [(text, True), (suffix, False)])
