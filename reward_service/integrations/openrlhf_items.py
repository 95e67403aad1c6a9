"""OpenRLHF's (queries, prompts, labels) as the service's items: the response cut out of each query.

Shared by the ``POST /openrlhf`` route and the reward-function file, so it imports
nothing but the wire models (pydantic): the file runs inside OpenRLHF's Ray
workers, where the service's server stack (fastapi, math-verify) is not installed.

OpenRLHF 0.11 builds each query as ``tokenizer.decode(prompt_ids + response_ids,
skip_special_tokens=False)``: the chat template's markers (``<|im_start|>``...)
and the end-of-sequence token the model stopped on (``<|im_end|>``, ``</s>``...)
are in the text. The response is scored without them, and ends at its first
end-of-turn marker: vLLM stops there when the stop tokens are set right, and when
they are not (a base model with a chat template runs on into an invented next
turn, with answers of its own) what follows is not the model's answer.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from reward_service.models import Item

__all__ = ["END_OF_TURN", "build_items", "clean_completion", "parse_label", "split_completion"]

# Markers after which nothing belongs to the model's single turn: end of turn or of
# sequence, or the start of a new turn. Harmony's `<|end|>` is not one (a gpt-oss
# response is several messages, each closed by `<|end|>`, the final one by `<|return|>`).
END_OF_TURN = (
    "<|im_end|>", "<|im_start|>",                               # ChatML (Qwen, Yi, ...)
    "<|endoftext|>", "<|end_of_text|>",                         # GPT-2 style, Qwen base, Llama 3 base
    "<|eot_id|>", "<|eom_id|>", "<|start_header_id|>",          # Llama 3
    "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",       # DeepSeek (full-width bars)
    "<|user|>", "<|assistant|>", "<|system|>",                  # Phi-3 (its <|end|> is Harmony's too)
    "[INST]",                                                   # Mistral
    "<end_of_turn>", "<start_of_turn>",                         # Gemma
    "<|return|>",                                               # Harmony (gpt-oss)
    "<|END_OF_TURN_TOKEN|>",                                    # Command-R
)
# Special tokens of the `<|name|>` / `<｜name｜>` forms are removed wherever they are:
# a tokenizer turns such text into the special token, so decoded text holds one only
# where the token was. Sentencepiece's `<s>`/`</s>` and Gemma's `<bos>`/`<eos>` look
# like markup (`<s>` is HTML's strikethrough), so they go only at the query's start
# and the response's end.
_SPECIAL = re.compile(r"<\|[^<>|\s]{1,64}\|>|<｜[^<>｜\s]{1,64}｜>")
_LEADING = re.compile(r"^(?:\s*(?:<s>|<bos>))+")
_TRAILING = ("</s>", "<eos>")
# Stands for an end-of-turn marker while prompt and query are compared: NUL is not
# text a tokenizer decodes to, and it keeps the markers' positions when the others go.
_END = "\x00"
_END_RE = re.compile("|".join(re.escape(m) for m in END_OF_TURN))


def _normalize(text: str) -> str:
    return _SPECIAL.sub("", _END_RE.sub(_END, _LEADING.sub("", text.replace(_END, ""))))


def _strip_trailing(text: str) -> str:
    # A loop, not a regex anchored at the end: searched for at every position, that
    # regex takes time quadratic in a run of whitespace.
    end = len(text)
    while True:
        stripped = text[:end].rstrip()
        marker = next((m for m in _TRAILING if stripped.endswith(m)), None)
        if marker is None:
            return text[:end]
        end = len(stripped) - len(marker)


def split_completion(query: str, prompt: str | None) -> tuple[str, bool]:
    """The response part of ``query`` and whether the prompt was found in it.

    OpenRLHF decodes prompt and response together, so a BOS token or a
    detokenization difference can put text before the prompt: the response is
    then what follows the prompt's first occurrence. With no prompt found the
    whole query is scored, which answer extraction (last boxed answer etc.) tolerates.
    A query that starts with the prompt's tail (OpenRLHF truncated the prompt) has
    the tail cut off. The response keeps its special tokens: ``clean_completion`` removes them.
    """
    if not prompt:
        return query, False
    if query.startswith(prompt):
        return query[len(prompt) :], True
    at = query.find(prompt)
    if at >= 0:
        return query[at + len(prompt) :], True
    rest = _after_prompt_tail(query, prompt)
    if rest is not None:
        return rest, True
    return query, False


# OpenRLHF cuts a prompt too long for --data.max_len from the left (its tokens'
# tail is kept) but sends the whole prompt: the query then starts with the prompt's
# tail. A tail this long can't be there by chance; a shorter one is not looked for.
_MIN_TAIL = 32


def _after_prompt_tail(query: str, prompt: str) -> str | None:
    """What follows the prompt's tail when ``query`` starts with one, else None."""
    for skip in range(4):  # a cut through a multi-byte character decodes to replacement characters
        probe = query[skip : skip + _MIN_TAIL]
        if len(probe) < _MIN_TAIL:
            return None
        if probe in prompt:
            tail = _longest_tail_prefix(prompt, query[skip : skip + len(prompt)])
            if tail >= _MIN_TAIL:
                return query[skip + tail :]
    return None


def _longest_tail_prefix(text: str, pattern: str) -> int:
    """Length of the longest prefix of ``pattern`` that ``text`` ends with (Knuth-Morris-Pratt).

    Linear in both lengths: a prompt repeating one phrase (few-shot boilerplate) has the
    query's opening at many places, and trying each would cost time quadratic in its length.
    """
    fail = [0] * len(pattern)
    k = 0
    for i in range(1, len(pattern)):
        while k and pattern[i] != pattern[k]:
            k = fail[k - 1]
        if pattern[i] == pattern[k]:
            k += 1
        fail[i] = k
    k = 0
    for ch in text:
        if k == len(pattern):
            k = fail[k - 1]
        while k and ch != pattern[k]:
            k = fail[k - 1]
        if ch == pattern[k]:
            k += 1
    return k


def clean_completion(query: str, prompt: str | None) -> tuple[str, bool, bool]:
    """(response without special tokens, prompt found, text followed the response's end-of-turn marker).

    Prompt and query are compared with their special tokens removed, so a prompt
    whose markers decode differently from how the template wrote them is still
    found, and so is the tail of a prompt OpenRLHF truncated. When the prompt is not
    found the whole query is scored, with its special
    tokens removed and nothing cut (its first end-of-turn marker closes the user's
    turn, not the model's).
    """
    completion, found = split_completion(_normalize(query), _normalize(prompt) if prompt else prompt)
    after_end = False
    if found:
        completion, _, rest = completion.partition(_END)
        after_end = bool(rest.replace(_END, "").strip())
    completion = _strip_trailing(completion.replace(_END, ""))
    return completion, found, after_end


def parse_label(label: Any, default_task: str) -> tuple[str, Any, dict[str, Any] | None]:
    """(task, ground_truth, options) from one OpenRLHF label."""
    if isinstance(label, str) and label.lstrip().startswith("{"):
        try:
            decoded = json.loads(label)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            label = decoded
    if isinstance(label, dict) and ("ground_truth" in label or "task" in label):
        options = label.get("options") if isinstance(label.get("options"), dict) else None
        return str(label.get("task") or default_task), label.get("ground_truth"), options
    return default_task, label, None


def build_items(
    queries: Sequence[str], prompts: Sequence[str] | None, labels: Sequence[Any] | None, default_task: str
) -> tuple[list[Item], dict[str, list[float]]]:
    """Items to score for OpenRLHF's (queries, prompts, labels), and per-query logs for OpenRLHF's ``extra_logs``.

    The logs: ``prompt_found`` (1 if the prompt was cut off the query) and
    ``text_after_end`` (1 if the model went on past its end-of-turn marker; that
    text was not scored: check the run's stop tokens).
    """
    n = len(queries)
    for name, given in (("prompts", prompts), ("labels", labels)):
        if given is not None and len(given) != n:
            raise ValueError(f"{name} has {len(given)} entries for {n} queries")
    items: list[Item] = []
    logs: dict[str, list[float]] = {"prompt_found": [], "text_after_end": []}
    for query, prompt, label in zip(queries, prompts or [None] * n, labels if labels is not None else [None] * n):
        completion, prompt_found, after_end = clean_completion(query, prompt)
        task, ground_truth, options = parse_label(label, default_task)
        items.append(Item(task=task, prompt=prompt, completion=completion, ground_truth=ground_truth, options=options))
        logs["prompt_found"].append(float(prompt_found))
        logs["text_after_end"].append(float(after_end))
    return items, logs
