"""OpenRLHF 0.11.2 on a CPU, for the drivers: its CLI's parser, its rollout actor, a real tokenizer.

What stands in for what, and nothing else:
- the GPU-only packages are empty modules (gpu_stubs.py);
- vLLM's engine, which would generate the response on a GPU, is ``ScriptedLLM``: it
  "generates" the tokens of a response the test chose for the prompt, ending with
  the tokenizer's EOS token as vLLM's output does when the model stops;
- the model's tokenizer is a real Hugging Face fast tokenizer (byte-level BPE, trained
  here on the test's text) with the special tokens and chat template of the family
  asked for (ChatML as Qwen uses it, or Llama 3's), so OpenRLHF's decode of prompt
  plus response holds the special tokens it would hold with the real model's.
OpenRLHF's own code does the rest: ``train_ppo_ray``'s argument parser,
``RolloutRayActor`` (its ``__init__``, ``generate_responses``, ``generate``),
``SingleTurnAgentExecutor`` (the remote reward call), ``preprocess_data`` (chat
template) and ``SamplesGenerator._process_response_into_experience`` (what the
trainer makes of the reward).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import runpy
import sys
from dataclasses import dataclass, field
from typing import Any

import gpu_stubs

gpu_stubs.install()

import vllm  # noqa: E402  (the stand-in)
import vllm.inputs  # noqa: E402
import vllm.utils  # noqa: E402


@dataclass
class SamplingParams:
    """The fields of vllm.SamplingParams that OpenRLHF sets and its executor reads."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int | None = None
    min_tokens: int = 1
    skip_special_tokens: bool = False
    logprobs: int | None = None


@dataclass
class _Completion:
    token_ids: list[int]
    text: str
    finish_reason: str
    logprobs: Any = None


@dataclass
class _RequestOutput:
    outputs: list[_Completion] = field(default_factory=list)


class ScriptedLLM:
    """vLLM's AsyncLLMEngine as OpenRLHF drives it, answering each prompt with the test's response."""

    tokenizer: Any = None
    responses: dict[str, tuple[str, bool]] = {}  # decoded prompt -> (response text, ends with EOS)

    @classmethod
    def from_engine_args(cls, engine_args: Any) -> ScriptedLLM:
        return cls()

    async def is_sleeping(self) -> bool:
        return False

    async def generate(self, prompt: dict, sampling_params: SamplingParams, request_id: str):
        tok = self.tokenizer
        seen = tok.decode(prompt["prompt_token_ids"], skip_special_tokens=False)
        # OpenRLHF keeps the tail of a prompt too long for its max_len
        (text, stops), = [answer for full, answer in self.responses.items() if full.endswith(seen)]
        ids = tok(text=text, add_special_tokens=False)["input_ids"]
        if stops:
            ids = ids + [tok.eos_token_id]
        if sampling_params.max_tokens is not None and len(ids) > sampling_params.max_tokens:
            ids, stops = ids[: sampling_params.max_tokens], False
        yield _RequestOutput([_Completion(ids, tok.decode(ids, skip_special_tokens=sampling_params.skip_special_tokens),
                                          "stop" if stops else "length")])


vllm.__version__ = "0.29.0"  # OpenRLHF 0.11.2's pin; RolloutRayActor checks it
vllm.SamplingParams = SamplingParams
vllm.AsyncEngineArgs = lambda *args, **kwargs: (args, kwargs)
vllm.AsyncLLMEngine = ScriptedLLM
vllm.inputs.TokensPrompt = dict
vllm.utils.random_uuid = lambda: os.urandom(8).hex()

CHAT_TEMPLATES = {
    # Qwen2.5's ChatML, with its default system prompt
    "chatml": ("{% for m in messages %}{% if loop.first and m['role'] != 'system' %}{{ '<|im_start|>system\\n"
               "You are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{ '<|im_start|>' + m['role'] + '\\n' + "
               "m['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}"
               "{{ '<|im_start|>assistant\\n' }}{% endif %}"),
    # Llama 3's
    "llama3": ("{{ '<|begin_of_text|>' }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + "
               "'<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}{% endfor %}"
               "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"),
}
SPECIAL_TOKENS = {
    "chatml": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "<|im_end|>"),
    "llama3": (["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
               "<|eot_id|>"),
}


def make_tokenizer(family: str, corpus: list[str]):
    """A real fast tokenizer with ``family``'s special tokens, EOS and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials, eos = SPECIAL_TOKENS[family]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=600, special_tokens=specials, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=specials[0],
                                   chat_template=CHAT_TEMPLATES[family])


class _Parsed(Exception):
    def __init__(self, args: Any) -> None:
        self.parsed = args


def parse_cli(argv: list[str]) -> tuple[Any, set[str]]:
    """``python -m openrlhf.cli.train_ppo_ray ARGV`` up to where training would start.

    The module's ``__main__`` block runs as written: its parser, ``hierarchize``, and
    every check it makes of the arguments. Training starts with Ray and then
    ``get_strategy(args)``: Ray is reported as already up and ``get_strategy`` hands
    the arguments back instead of building DeepSpeed. Returns (args, the parser's
    option strings). An unknown flag or a failed check raises ``SystemExit`` /
    ``AssertionError`` with OpenRLHF's message.
    """
    import ray

    import openrlhf.utils

    seen: list[argparse.ArgumentParser] = []
    original_parse = argparse.ArgumentParser.parse_args

    def parse_args(self, *a, **kw):
        seen.append(self)
        return original_parse(self, *a, **kw)

    def get_strategy(args):
        raise _Parsed(args)

    saved = (sys.argv, ray.is_initialized, openrlhf.utils.get_strategy, argparse.ArgumentParser.parse_args)
    sys.argv = ["train_ppo_ray", *argv]
    ray.is_initialized = lambda: True
    openrlhf.utils.get_strategy = get_strategy
    argparse.ArgumentParser.parse_args = parse_args
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # train() prints the arguments
            runpy.run_module("openrlhf.cli.train_ppo_ray", run_name="__main__", alter_sys=False)
    except _Parsed as parsed:
        return parsed.parsed, set(seen[0]._option_string_actions)
    finally:
        sys.argv, ray.is_initialized, openrlhf.utils.get_strategy, argparse.ArgumentParser.parse_args = saved
    raise AssertionError("train_ppo_ray returned without starting training")
