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
    return out


_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "user": "user", "assistant": "assistant", "function": "tool"}


def _one_message(m: Any, i: int) -> dict[str, str]:
    if hasattr(m, "type") and hasattr(m, "content"):  # LangChain BaseMessage
        # ChatMessage (type "chat") carries its role itself
        role = _ROLES.get(getattr(m, "role", "") if m.type == "chat" else m.type)
        content = m.content if isinstance(m.content, str) else _text_of(m.content)
        calls = getattr(m, "tool_calls", None) or []
        if calls:
            content = (content + "\n" if content else "") + json.dumps(
                [{"name": c["name"], "arguments": c.get("args", {})} for c in calls], ensure_ascii=False
            )
    elif isinstance(m, dict):
        role = _ROLES.get(m.get("role", ""))
        content = m.get("content") or ""
        if not isinstance(content, str):
            content = _text_of(content)
        calls = m.get("tool_calls") or []
        if calls:
            rendered = []
            for c in calls:
                fn = c.get("function", c)
                args = fn.get("arguments", fn.get("args", {}))
                if isinstance(args, str):
                    try:
                        args = json.loads(args or "{}")
                    except json.JSONDecodeError as exc:
                        raise MessageError(f"message {i}: the arguments of tool call {fn.get('name')!r} are not JSON: {exc}") from None
                rendered.append({"name": fn["name"], "arguments": args})
            content = (content + "\n" if content else "") + json.dumps(rendered, ensure_ascii=False)
    else:
        raise MessageError(f"message {i} is a {type(m).__name__}; expected a dict with 'role' and 'content' or a LangChain message")
    if role is None:
        what = (getattr(m, "role", None) or m.type) if hasattr(m, "type") else m.get("role")
        raise MessageError(f"message {i} has an unknown role {what!r}")
    return {"role": role, "content": content}


def _text_of(parts: Any) -> str:
    if isinstance(parts, list):
        return "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in parts)
    return str(parts)


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
        return tokenizer.apply_chat_template(chat, chat_template=template, tokenize=False, add_generation_prompt=True)
