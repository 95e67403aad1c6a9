"""TRL GRPOTrainer with the reward service as its reward function.

    REWARD_SERVICE_URL=http://rewards.internal:8000 python examples/trl/grpo_with_reward_service.py

The dataset needs a ``prompt`` column and a ground-truth column (``ground_truth``
here); every other column reaches the reward function too, so a ``task`` column
can pick the verifier per row in a mixed dataset.
"""
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from reward_service.integrations.trl import make_reward_func

dataset = Dataset.from_list([
    {"prompt": [{"role": "user", "content": "What is 6*7? Put the answer in \\boxed{}."}],
     "ground_truth": "42", "task": "math"},
    {"prompt": [{"role": "user", "content": "Which is prime? (A) 4 (B) 7 (C) 9. Answer with the letter."}],
     "ground_truth": "B", "task": "mcq"},
])

# One reward function for the whole mixed dataset: the task comes from each row's "task" column,
# "math" when a row leaves it empty. URL and API key default to REWARD_SERVICE_URL / _API_KEY.
reward = make_reward_func(task="math", task_column="task", ground_truth_column="ground_truth")

trainer = GRPOTrainer(
    model="Qwen/Qwen2.5-0.5B-Instruct",
    reward_funcs=[reward],  # logged as rewards/reward_service/mean
    args=GRPOConfig(output_dir="grpo-reward-service", num_generations=8, per_device_train_batch_size=8),
    train_dataset=dataset,
)
trainer.train()
