#!/usr/bin/env bash
# OpenRLHF with the reward service as its remote reward model.
# The service answers OpenRLHF's remote RM protocol at POST /openrlhf:
#   request  {"query": [prompt+response], "prompts": [prompt], "labels": [label]}
#   response {"rewards": [...], "scores": [...], "extra_logs": {"status_ok": [...], "prompt_found": [...]}}
#
# Labels come from the dataset column named by --label_key. Either:
#   - a plain ground truth ("72"), scored with the task in the URL (?task=math, the default), or
#   - a JSON string {"task": "mcq", "ground_truth": "B", "options": {...}} choosing the task per sample.
#
# Start the service first (on the reward host):
#   python -m reward_service.cli serve --host 0.0.0.0 --port 8000
#
# Two ways to point OpenRLHF at it:
#   A) the HTTP route (below). OpenRLHF sends no Authorization header, so run the
#      service without REWARD_SERVICE_API_KEY, on a private network.
#   B) the reward-function file, which calls /score with the Python client (sends the
#      API key, retries); reward_service must be installed where OpenRLHF runs:
#        REWARD_URL=$(python3 -c "import reward_service.integrations.openrlhf_reward_func as m; print(m.__file__)")
#      and pass REWARD_SERVICE_URL / REWARD_SERVICE_API_KEY / REWARD_SERVICE_TASK to the
#      Ray job, e.g. --runtime-env-json='{"env_vars": {"REWARD_SERVICE_URL": "http://rewards.internal:8000"}}'
set -x

REWARD_URL=${REWARD_URL:-http://rewards.internal:8000/openrlhf?task=math}

ray job submit --address="http://127.0.0.1:8265" \
  -- python3 -m openrlhf.cli.train_ppo_ray \
  --pretrain Qwen/Qwen2.5-Math-1.5B \
  --remote_rm_url "$REWARD_URL" \
  --prompt_data your/math-dataset \
  --input_key question \
  --label_key answer \
  --apply_chat_template \
  --advantage_estimator reinforce_baseline \
  --n_samples_per_prompt 8 \
  --actor_num_nodes 1 --actor_num_gpus_per_node 8 \
  --vllm_num_engines 2 --vllm_tensor_parallel_size 1 \
  --micro_rollout_batch_size 16 --rollout_batch_size 128 \
  --micro_train_batch_size 8 --train_batch_size 128 \
  --max_epochs 1 --num_episodes 1 \
  --prompt_max_len 1024 --generate_max_len 2048 \
  --init_kl_coef 0 \
  --save_path ./checkpoint/reinforce-reward-service
