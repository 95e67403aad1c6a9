#!/usr/bin/env bash
# OpenRLHF (0.11 flags) with the reward service as its reward.
# tests/test_trainer_openrlhf.py parses this command line with OpenRLHF 0.11.2's own parser.
#
# Labels come from the dataset column named by --data.label_key. Either:
#   - a plain ground truth ("72"), scored with the route's ?task= (default math) or the file's
#     REWARD_SERVICE_TASK, or
#   - a JSON string {"task": "mcq", "ground_truth": "B", "options": {...}} choosing the task per sample.
# The response is the query with the prompt cut off, the special tokens OpenRLHF decodes into it
# (<|im_end|>, <|eot_id|>, </s>, ...) removed, and nothing after its first end-of-turn token.
#
# Start the service first (on the reward host):
#   python -m reward_service.cli serve --host 0.0.0.0 --port 8000
#
# Two ways to point OpenRLHF at it (--reward.remote_url):
#   A) the HTTP route, POST /openrlhf (the default below). OpenRLHF sends NO API KEY: if the service
#      has REWARD_SERVICE_API_KEY set, every call gets 401, OpenRLHF logs it only at INFO, retries each
#      sample five times and trains on without rewards until it fails. Without a key, keep the service
#      on a private network; with one, use B (or, if OpenRLHF's printed arguments are private, put the
#      key in the URL's user-info: REWARD_URL="http://openrlhf:$KEY@rewards.internal:8000/openrlhf?task=math").
#   B) the reward-function file: REQUIRED FOR A SERVICE WITH AN API KEY. It calls /score with the
#      Python client (sends REWARD_SERVICE_API_KEY, retries while the service is unavailable, logs a
#      refused key as an error). reward_service (with httpx and pydantic) must be installed where
#      OpenRLHF's rollout workers run:
#        REWARD_URL=$(python3 -c "import reward_service.integrations.openrlhf_reward_func as m; print(m.__file__)")
#        RUNTIME_ENV='{"env_vars": {"REWARD_SERVICE_URL": "http://rewards.internal:8000",
#                                   "REWARD_SERVICE_API_KEY": "...", "REWARD_SERVICE_TASK": "math"}}'
#
# OpenRLHF 0.11 calls the reward once per sample (one request each, many at a time).
set -euo pipefail
set -x

REWARD_URL=${REWARD_URL:-http://rewards.internal:8000/openrlhf?task=math}
RUNTIME_ENV=${RUNTIME_ENV:-'{}'}

ray job submit --address="http://127.0.0.1:8265" \
  --runtime-env-json="$RUNTIME_ENV" \
  -- python3 -m openrlhf.cli.train_ppo_ray \
  --actor.model_name_or_path Qwen/Qwen2.5-Math-1.5B \
  --reward.remote_url "$REWARD_URL" \
  --data.prompt_dataset your/math-dataset \
  --data.input_key question \
  --data.label_key answer \
  --data.apply_chat_template \
  --algo.advantage.estimator reinforce_baseline \
  --rollout.n_samples_per_prompt 8 \
  --actor.num_nodes 1 --actor.num_gpus_per_node 8 \
  --ref.num_nodes 1 --ref.num_gpus_per_node 8 \
  --vllm.num_engines 2 --vllm.tensor_parallel_size 1 \
  --rollout.batch_size 128 --rollout.micro_batch_size 16 \
  --train.batch_size 128 --train.micro_batch_size 8 \
  --train.max_epochs 1 --train.num_episodes 1 \
  --data.max_len 3072 --rollout.max_new_tokens 2048 \
  --algo.kl.init_coef 0 \
  --ckpt.output_dir ./checkpoint/reinforce-reward-service
