"""A real TRL ``GRPOTrainer`` small enough for a CPU: a one-layer Llama over a nine-word vocabulary.

The tests that run TRL's own reward code (a training step, ``_calculate_rewards``) build it here.
"""
from __future__ import annotations

from typing import Any

import pytest


def tiny_trainer(reward_funcs: list[Any], conversational: bool, tmp_path: Any) -> Any:
    pytest.importorskip("trl")
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from trl import GRPOConfig, GRPOTrainer

    # A vocabulary where random generation often writes a right or a wrong boxed answer.
    words = ["<pad>", "<eos>", "<bos>", "\\boxed{4}", "\\boxed{5}", "so", "what", "is", "2+2?"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>")
    tok.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=64, pad_token_id=0, eos_token_id=1, bos_token_id=2))
    prompt = [{"role": "user", "content": "what is 2+2?"}] if conversational else "what is 2+2?"
    dataset = Dataset.from_dict({"prompt": [prompt] * 4, "ground_truth": ["4"] * 4})
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=4, max_steps=1, report_to=[], logging_steps=1, use_cpu=True,
                      save_strategy="no", bf16=False, seed=0)
    return GRPOTrainer(model=model, reward_funcs=list(reward_funcs), args=args, train_dataset=dataset,
                       processing_class=tok)
