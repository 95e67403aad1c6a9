"""One OpenRLHF rollout step's reward calls, OpenRLHF's code end to end, against a live service.

argv[1]: JSON {"remote_url": ..., "family": "chatml"|"llama3", "flags": [extra train_ppo_ray flags],
               "samples": [{"question": ..., "answer": label, "response": ..., "stops": true}]}
The flags go through train_ppo_ray's parser (with --reward.remote_url, --data.input_key
question, --data.label_key answer, --data.apply_chat_template); its args.reward.remote_url
goes to RolloutRayActor as create_vllm_engines passes it. Each sample's prompt is made by
OpenRLHF's preprocess_data with the tokenizer's chat template; RolloutRayActor.generate_responses
runs SingleTurnAgentExecutor, which decodes prompt + response and calls the reward URL or
file; SamplesGenerator._process_response_into_experience turns that into the trainer's
Experience. --rollout.n_samples_per_prompt N makes N concurrent calls per prompt, as in training.
Prints JSON: per sample the first Experience's rewards, scores and info, every Experience's
rewards, and the log lines of OpenRLHF's executor and of the reward-function file.
"""
import asyncio
import json
import logging
import os
import sys

from openrlhf_cpu import SamplingParams, ScriptedLLM, make_tokenizer, parse_cli


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(f"{record.name}: {record.getMessage()}")


def plain(value):
    import torch

    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value


async def main() -> None:
    request = json.loads(sys.argv[1])
    os.environ.setdefault("RAY_ADDRESS", "127.0.0.1:6379")  # read by vLLM only; no Ray cluster is started

    from openrlhf.datasets.prompts_dataset import preprocess_data
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator
    from openrlhf.trainer.ray.vllm_engine import RolloutRayActor

    args, _ = parse_cli(["--actor.model_name_or_path", "scripted-model", "--reward.remote_url", request["remote_url"],
                         "--data.input_key", "question", "--data.label_key", "answer", "--data.apply_chat_template",
                         *request.get("flags", [])])
    samples = request["samples"]
    tokenizer = make_tokenizer(request.get("family", "chatml"),
                               [s["question"] + " " + s["response"] for s in samples] * 4)
    ScriptedLLM.tokenizer = tokenizer
    ScriptedLLM.responses = {}

    collected = Collect()
    for name in ("openrlhf.utils.agent", "reward_service.openrlhf"):
        logging.getLogger(name).addHandler(collected)
        logging.getLogger(name).setLevel(logging.INFO)

    # As create_vllm_engines makes each engine: RolloutRayActor's own (async) __init__.
    actor_cls = RolloutRayActor.__ray_metadata__.modified_class
    actor = actor_cls.__new__(actor_cls)
    await actor_cls.__init__(actor, model="scripted-model", remote_rm_url=args.reward.remote_url,
                             agent_func_path=args.train.agent_func_path, num_gpus=0.2,
                             distributed_executor_backend=None, full_determinism=False)

    sampling_params = SamplingParams(temperature=args.rollout.temperature, top_p=args.rollout.top_p,
                                     max_tokens=args.rollout.max_new_tokens, skip_special_tokens=False)
    out = []
    for sample in samples:
        prompt, label = preprocess_data(sample, args.data.input_template, args.data.input_key, args.data.label_key,
                                        apply_chat_template=tokenizer.apply_chat_template)
        ids = tokenizer(text=prompt, add_special_tokens=False)["input_ids"]
        ScriptedLLM.responses[tokenizer.decode(ids, skip_special_tokens=False)] = (sample["response"],
                                                                                   sample.get("stops", True))
        responses = await actor.generate_responses(prompt=prompt, label=label, sampling_params=sampling_params,
                                                   max_length=args.data.max_len, hf_tokenizer=tokenizer,
                                                   num_samples=args.rollout.n_samples_per_prompt)
        exps = [SamplesGenerator._process_response_into_experience(None, r, max_len=args.data.max_len)
                for r in responses]
        out.append({"prompt": prompt, "n": len(exps),
                    "rewards": plain(exps[0].rewards), "scores": plain(exps[0].scores),
                    "info": {k: plain(v) for k, v in exps[0].info.items()},
                    "all_rewards": [plain(e.rewards) for e in exps]})
    import importlib.util

    server_stack = [m for m in ("fastapi", "starlette", "uvicorn", "math_verify") if importlib.util.find_spec(m)]
    print(json.dumps({"samples": out, "log": collected.lines, "server_stack_installed": server_stack}))


asyncio.run(main())
