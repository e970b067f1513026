"""A tiny random-init Llama with a byte-level BPE tokenizer trained here, for fast tests.

It mirrors SmolLM2-135M-Instruct's interface (special tokens ``<|endoftext|>`` = 0,
``<|im_start|>`` = 1, ``<|im_end|>`` = 2; bos ``<|im_start|>``, eos and pad ``<|im_end|>``;
the same ChatML chat template; byte-level BPE so any text is encodable; no special
tokens added by ``encode``) at a few hundred thousand parameters.

    build_tiny_model(path, seed=0)  ->  path   (a save_pretrained folder; deterministic, < 5 s)
"""

from __future__ import annotations

import pathlib

import torch

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 768

# SmolLM2-135M-Instruct's template, verbatim.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_FUNCS = [
    ("get_weather", {"city": ["Paris", "London", "Tokyo", "New York", "Berlin"], "unit": ["celsius", "fahrenheit"]}),
    ("get_time", {"timezone": ["UTC", "Europe/Paris", "America/New_York"]}),
    ("search_web", {"query": ["latest news", "python tutorial", "best pizza near me"], "max_results": [3, 5, 10]}),
    ("calculate", {"expression": ["2 + 2", "3 * (4 - 1)", "10 / 5", "-7 + 12"], "precision": [0, 2]}),
    ("send_email", {"to": ["alice@example.com", "bob@example.org"], "subject": ["Hello", "Meeting"], "body": ["See you soon."]}),
    ("book_flight", {"origin": ["SFO", "JFK"], "destination": ["LHR", "CDG"], "date": ["2024-05-01", "2025-12-31"]}),
    ("convert_currency", {"amount": [100, 12.5, 3.75], "from_currency": ["USD", "EUR"], "to_currency": ["JPY", "GBP"]}),
]

_PROSE = [
    "What is the weather like in Paris today?",
    "Please find the latest news about the stock market.",
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    "Call the function with the right arguments and return a JSON object.",
    "The answer is 42, and the total is -3.5 + 7 = 3.5.",
    "I cannot help with that request because no tool is relevant.",
    "Convert 100 dollars to euros and tell me the result.",
    "Here are the available functions: name, description, parameters, properties, required, type.",
    'type: "string", "integer", "number", "boolean", "array", "object"; enum; default; items.',
]


def _corpus() -> list[str]:
    """A small deterministic corpus of JSON tool calls, tool specs, ChatML turns and prose."""
    import json

    lines: list[str] = []
    for name, params in _FUNCS:
        for i in range(3):
            args = {k: v[i % len(v)] for k, v in params.items()}
            call = {"name": name, "arguments": args}
            lines.append(json.dumps(call))
            lines.append(json.dumps([call, {"name": name, "arguments": {}}], indent=2))
            lines.append(f"<|im_start|>assistant\n{json.dumps(call)}<|im_end|>")
        spec = {
            "name": name,
            "description": f"Call {name.replace('_', ' ')}.",
            "parameters": {
                "type": "object",
                "properties": {k: {"type": "string" if isinstance(v[0], str) else "number"} for k, v in params.items()},
                "required": list(params)[:1],
            },
        }
        lines.append(json.dumps(spec))
    for text in _PROSE:
        lines.append(f"<|im_start|>user\n{text}<|im_end|>")
        lines.append(text)
    lines.append("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>")
    lines.append(" ".join(str(n) for n in range(0, 200, 7)) + " 3.14 -1 +1 1e-3 0.5 100%")
    lines.append("{} [] {\"\": \"\"} [{}] {\"a\": [1, 2, 3], \"b\": {\"c\": null, \"d\": true, \"e\": false}}")
    return lines


def build_tokenizer():
    """Train the byte-level BPE tokenizer and wrap it as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,  # ids 0, 1, 2 in this order
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: any text encodes
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        model_max_length=2048,
    )
    fast.chat_template = CHAT_TEMPLATE
    for sign in ("+", "-"):
        ids = fast.encode(sign, add_special_tokens=False)
        assert len(ids) == 1, f"{sign!r} should be one token, got {ids}"
    return fast


def build_tiny_model(path: pathlib.Path, *, seed: int = 0) -> pathlib.Path:
    """Write a tiny random-init Llama + trained tokenizer into ``path``; return ``path``.

    Deterministic: the same seed gives the same weights and the same tokenizer.  The
    global torch RNG state is left as it was.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


if __name__ == "__main__":  # python tests/tiny_model.py OUT_DIR
    import sys
    import time

    t = time.perf_counter()
    out = build_tiny_model(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-model"))
    print(f"built {out} in {time.perf_counter() - t:.2f} s")
