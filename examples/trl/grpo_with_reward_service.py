"""TRL GRPOTrainer with the reward service as its reward functions.

    REWARD_SERVICE_URL=http://rewards.internal:8000 python examples/trl/grpo_with_reward_service.py

The dataset needs a ``prompt`` column and a ground-truth column (``ground_truth``
here); every other column reaches the reward functions too, so a ``task`` column
can pick the verifier per row in a mixed dataset.
"""
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from reward_service.integrations.trl import make_reward_func

dataset = Dataset.from_list([
    {"prompt": [{"role": "user",
                 "content": "What is 6*7? Explain in exactly two markdown bullet points, then give \\boxed{answer}."}],
     "ground_truth": "42", "task": "math",
     "format": {"instruction_id_list": ["detectable_format:number_bullet_lists"], "kwargs": [{"num_bullets": 2}]}},
    {"prompt": [{"role": "user", "content": "Which is prime? (A) 4 (B) 7 (C) 9. Write only lowercase letters."}],
     "ground_truth": "B", "task": "mcq",
     "format": {"instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]}},
])

# The answer check: one function for the whole mixed dataset, the task from each row's "task" column
# ("math" when a row leaves it empty). URL and API key default to REWARD_SERVICE_URL / _API_KEY.
# A row whose ground truth the service can't use (status "invalid") gets None, not 0: TRL leaves it
# out of the advantages instead of teaching the policy that its answer was wrong. Not "timeout": a
# completion can be slow on purpose, and a None would spare it the penalty.
answer = make_reward_func(task="math", task_column="task", name="answer", none_for=("invalid",), asynchronous=True)

# A second check on the same completions (ifeval instructions in the "format" column). Both are async:
# TRL awaits them together on its event loop, so a step waits for the slower request, not for both.
fmt = make_reward_func(task="ifeval", ground_truth_column="format", name="format", asynchronous=True)


def main() -> None:
    trainer = GRPOTrainer(
        model="Qwen/Qwen2.5-0.5B-Instruct",
        reward_funcs=[answer, fmt],  # logged as rewards/answer/mean, rewards/format/mean (+ answer/not_ok_frac, ...)
        args=GRPOConfig(output_dir="grpo-reward-service", num_generations=8, per_device_train_batch_size=8),
        train_dataset=dataset,
    )
    trainer.train()


if __name__ == "__main__":
    main()
