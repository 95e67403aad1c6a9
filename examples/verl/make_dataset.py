"""Shape of a verl parquet row the reward service can score (verl's data preprocessing convention).

verl reads ``data_source`` (mapped to a task), ``reward_model.ground_truth`` and
``extra_info``; ``extra_info["task"]`` / ``["reward_options"]`` / ``["prompt"]``
are optional per-row overrides read by reward_service.integrations.verl.
"""
rows = [
    {
        "data_source": "openai/gsm8k",  # -> task "math" by the default map
        "prompt": [{"role": "user", "content": "Natalia sold 48 clips in April and half as many in May. Total?"}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": "72"},
        "extra_info": {"split": "train", "index": 0},
    },
    {
        "data_source": "my_org/quiz",  # not in the default map: say which task
        "prompt": [{"role": "user", "content": "Which is a prime? (A) 4 (B) 7 (C) 9 (D) 15"}],
        "ability": "mcq",
        "reward_model": {"style": "rule", "ground_truth": "B"},
        "extra_info": {"split": "train", "index": 1, "task": "mcq"},
    },
]

if __name__ == "__main__":
    import pandas as pd  # verl's own dependency

    pd.DataFrame(rows).to_parquet("train.parquet")
