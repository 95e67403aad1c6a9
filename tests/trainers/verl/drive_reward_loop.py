"""Run verl 0.9.1's own reward loop on a DataProto of GRPO rollouts; print what it computed.

Runs in the verl environment (.trainers/verl), started by tests/test_trainer_verl.py with
the live service's address in REWARD_SERVICE_URL. Everything that decides rewards is
verl's: its Hydra config (trainer/config/ppo_trainer.yaml with the overrides a user
would pass), RewardLoopManager, its Ray RewardLoopWorker actors, the reward manager
named in the config, the loading of custom_reward_function.path, and assemble_rm_scores
writing the score into the rm_scores tensor. The driver only makes the inputs: a byte-level
tokenizer (no model hub here) and the rollouts, tokenized as a rollout would leave them.

No GPU-only module is imported on this path in verl 0.9.1 (no flash_attn, vllm, sglang),
so nothing is stubbed.

argv[1] is JSON: {"path", "name", "manager", "num_workers", "reward_kwargs", "rows", "legacy", "config_file"}
("config_file": a YAML fragment merged over verl's config instead of the path/name/manager overrides);
a row is {"data_source", "prompt", "response", "ground_truth", "extra_info"}.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile

PROMPT_LEN = 96
RESPONSE_LEN = 64


def byte_tokenizer(directory: str):
    """A lossless byte-level tokenizer saved as a Hugging Face tokenizer directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")
    fast.save_pretrained(directory)
    return directory


def verl_config(overrides: list[str]):
    """verl's own trainer config (the schema a user's overrides are checked against)."""
    import verl
    from hydra import compose, initialize_config_dir

    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides)


def rollouts(rows: list[dict], tokenizer):
    """A DataProto shaped as verl's rollout hands it to the reward loop: left-padded prompts,
    right-padded responses ending in EOS, the dataset's non-tensor fields per row."""
    import numpy as np
    import torch

    from verl import DataProto

    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    prompts, responses, masks = [], [], []
    for row in rows:
        p = tokenizer.encode(row["prompt"], add_special_tokens=False)[-PROMPT_LEN:]
        r = (tokenizer.encode(row["response"], add_special_tokens=False) + [eos])[:RESPONSE_LEN]
        prompts.append([pad] * (PROMPT_LEN - len(p)) + p)
        responses.append(r + [pad] * (RESPONSE_LEN - len(r)))
        masks.append([0] * (PROMPT_LEN - len(p)) + [1] * (len(p) + len(r)) + [0] * (RESPONSE_LEN - len(r)))
    prompts_t, responses_t = torch.tensor(prompts), torch.tensor(responses)
    mask_t = torch.tensor(masks)
    tensors = {
        "prompts": prompts_t,
        "responses": responses_t,
        "input_ids": torch.cat([prompts_t, responses_t], dim=1),
        "attention_mask": mask_t,
        "position_ids": torch.clamp(torch.cumsum(mask_t, dim=1) - 1, min=0),
    }
    obj = lambda values: np.array(values, dtype=object)  # noqa: E731 (verl keeps these as object arrays)
    non_tensors = {
        "data_source": obj([row["data_source"] for row in rows]),
        "reward_model": obj([{"style": "rule", "ground_truth": row["ground_truth"]} for row in rows]),
        "extra_info": obj([dict(row.get("extra_info") or {}) for row in rows]),
        "raw_prompt": obj([[{"role": "user", "content": row["prompt"]}] for row in rows]),
        "uid": obj([row.get("uid", str(i)) for i, row in enumerate(rows)]),
    }
    return DataProto.from_dict(tensors=tensors, non_tensors=non_tensors)


def main() -> None:
    args = json.loads(sys.argv[1])
    import ray

    from verl.experimental.reward_loop import RewardLoopManager

    tmp = tempfile.mkdtemp(prefix="verl-driver-")
    tokenizer_dir = byte_tokenizer(os.path.join(tmp, "tokenizer"))
    if args.get("config_file"):
        overrides = []
    elif args.get("legacy"):
        # The pre-0.9 keys (top-level custom_reward_function, reward_model.reward_manager):
        # still accepted by the schema, read by nothing in the 0.9 trainer.
        overrides = [f"custom_reward_function.path={args['path']}", f"custom_reward_function.name={args['name']}",
                     f"reward_model.reward_manager={args.get('manager', 'naive')}"]
    else:
        overrides = [f"reward.custom_reward_function.path={args['path']}",
                     f"reward.custom_reward_function.name={args['name']}",
                     f"reward.reward_manager.name={args.get('manager', 'naive')}"]
        # reward_kwargs is not in verl's schema, so a command line adds it with "+".
        overrides += [f"+reward.custom_reward_function.reward_kwargs.{k}={json.dumps(v)}"
                      for k, v in (args.get("reward_kwargs") or {}).items()]
    overrides += [f"reward.num_workers={args.get('num_workers', 2)}", f"actor_rollout_ref.model.path={tokenizer_dir}"]
    config = verl_config(overrides)
    if args.get("config_file"):
        from omegaconf import OmegaConf

        # As a user's own config file on top of ppo_trainer would: new keys (reward_kwargs) allowed.
        OmegaConf.set_struct(config, False)
        config = OmegaConf.merge(config, OmegaConf.load(args["config_file"]))
        config.reward.num_workers = args.get("num_workers", 2)
        OmegaConf.set_struct(config, True)

    # The service's address reaches verl's Ray actors as a user's runtime_env would carry it.
    env_vars = {k: v for k, v in os.environ.items() if k.startswith("REWARD_SERVICE_") or k == "PYTHONPATH"}
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 1024**2,
             runtime_env={"env_vars": env_vars})
    try:
        manager = RewardLoopManager(config=config)
        from verl.utils import hf_tokenizer

        data = rollouts(args["rows"], hf_tokenizer(tokenizer_dir))
        out = manager.compute_rm_score(data)
    finally:
        ray.shutdown()

    rm = out.batch["rm_scores"]
    valid = data.batch["attention_mask"][:, PROMPT_LEN:].sum(dim=1)
    nonzero = [[j for j in range(rm.shape[1]) if rm[i, j] != 0] for i in range(rm.shape[0])]
    print(json.dumps({
        "rewards": rm.sum(dim=1).tolist(),
        "reward_at": rm[range(rm.shape[0]), valid - 1].tolist(),
        "nonzero_positions": nonzero,
        "valid_response_lengths": valid.tolist(),
        "reward_extra_keys": out.meta_info.get("reward_extra_keys", []),
        "reward_extra_info": {k: [float(x) for x in out.non_tensor_batch[k]]
                              for k in out.meta_info.get("reward_extra_keys", [])},
    }))


if __name__ == "__main__":
    main()
