"""The `logic` task: Reasoning Gym entries scored by their own dataset's validator.

Every registered dataset is generated for real (small, fixed seed) and the
service's reward is compared with what ``score_answer`` says about the same
answer, after the entry has made the JSON round trip the HTTP API puts it
through.  The reference pipeline is Reasoning Gym's own: its
``extract_answer`` on the completion, then ``score_answer`` on the original
entry.
"""
from __future__ import annotations

import inspect
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest
import reasoning_gym
from reasoning_gym.composite import CompositeConfig, CompositeDataset, DatasetSpec
from reasoning_gym.dataset import ProceduralDataset
from reasoning_gym.factory import DATASETS, register_dataset
from reasoning_gym.utils import extract_answer

import verifiers
from verifiers.tasks import _reasoning_gym as rg_engine
from verifiers.tasks._rg_guard import ANSWER_EVALUATED, GROUND_TRUTH_EVALUATED, unsafe_reason

SEED = 20240601
PER_DATASET = 3
ALL_DATASETS = sorted(name for name in DATASETS if name not in rg_engine.MIXTURES)


def score(completion: str, ground_truth: Any, **options) -> verifiers.Verdict:
    return verifiers.score("logic", completion, ground_truth, options)


def over_the_wire(entry: dict) -> dict:
    """What the service receives: JSON turns tuples into lists and int keys into strings."""
    return json.loads(json.dumps(entry))


def rg_reference(dataset: ProceduralDataset, completion: str, entry: dict) -> float:
    """Reasoning Gym's own verdict, clamped to [0, 1] as the service clamps it (spell_backward's
    partial credit can sum to 1.0000000000000002)."""
    return min(1.0, max(0.0, dataset.score_answer(extract_answer(completion), entry)))


_generated: dict[str, tuple[ProceduralDataset, list[dict]]] = {}


def generated(name: str) -> tuple[ProceduralDataset, list[dict]]:
    if name not in _generated:
        try:
            ds = reasoning_gym.create_dataset(name, size=PER_DATASET, seed=SEED)
            _generated[name] = (ds, [ds[i] for i in range(PER_DATASET)])
        except Exception as e:  # only generation itself may skip a dataset
            pytest.skip(f"reasoning_gym cannot generate {name}: {type(e).__name__}: {e}")
    return _generated[name]


def reference_answer(entry: dict) -> Optional[str]:
    """A full-credit answer: the entry's own, or for validity-scored datasets the example it carries."""
    if entry["answer"] is not None:
        return entry["answer"]
    md = entry["metadata"]
    if "possible_answer" in md:  # graph_color
        return json.dumps(md["possible_answer"])
    return md.get("example_answer") or md.get("example_correct_answer")  # propositional_logic, rubiks_cube


# --- every dataset ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL_DATASETS)
def test_reference_answer_in_tags_scores_as_the_dataset_scores_it(name):
    ds, entries = generated(name)
    answers = [reference_answer(e) for e in entries]
    if all(a is None for a in answers):
        pytest.skip(f"{name} entries carry no solution to submit (answer is null); covered by the other tests")
    for entry, answer in zip(entries, answers):
        if answer is None:
            continue
        completion = f"<think>Let me work it out.</think>\n<answer>{answer}</answer>"
        v = score(completion, over_the_wire(entry))
        assert v.status == "ok", v.detail
        assert v.detail["source"] == "tag" and v.detail["dataset"] == name
        assert v.reward == rg_reference(ds, completion, entry) == 1.0


@pytest.mark.parametrize("name", ALL_DATASETS)
def test_other_answers_score_as_the_dataset_scores_them(name):
    ds, entries = generated(name)
    for entry in entries:
        ref = reference_answer(entry) or "x"
        for answer in ("wrong", ref[:-1] or "0", ref + "0"):
            completion = f"<answer>{answer}</answer>"
            v = score(completion, over_the_wire(entry))
            try:
                expected = rg_reference(ds, completion, entry)
            except Exception:  # the dataset's scorer raises on this answer: the service reports it
                assert v.status == "error" and v.reward == 0.0
                continue
            assert (v.status, v.reward) == ("ok", expected), (answer, v.detail)


@pytest.mark.parametrize("name", ALL_DATASETS)
def test_missing_answer_scores_as_the_dataset_scores_none(name):
    ds, entries = generated(name)
    for entry in entries:
        for completion in ("", "<think>still thinking</think>\n  \n"):
            v = score(completion, over_the_wire(entry))
            assert (v.status, v.detail["source"], v.detail["extracted"]) == ("ok", "none", None)
            assert v.reward == ds.score_answer(None, entry)


def test_advertised_datasets_match_the_installed_registry():
    spec = verifiers.get("logic")
    assert spec.family == "logic"
    assert spec.extra["datasets"] == ALL_DATASETS == sorted(spec.extra["datasets"])


def test_loading_the_task_does_not_import_reasoning_gym():
    code = "import sys, verifiers; verifiers.load_all(); print('reasoning_gym' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"


# --- extraction --------------------------------------------------------------------------------------

def _gcd_entry() -> dict:
    return generated("gcd")[1][0]


def test_last_answer_tag_wins():
    entry = _gcd_entry()
    v = score(f"<answer>wrong</answer> on reflection <answer>{entry['answer']}</answer>", entry)
    assert (v.reward, v.detail["extracted"]) == (1.0, entry["answer"])


def test_answer_tags_inside_thinking_are_ignored():
    entry = _gcd_entry()
    v = score(f"<think>maybe <answer>{entry['answer']}</answer></think><answer>wrong</answer>", entry)
    assert (v.reward, v.detail["extracted"]) == (0.0, "wrong")


def test_thinking_only_answer_falls_back_to_the_response_after_it():
    entry = _gcd_entry()
    v = score(f"<think><answer>{entry['answer']}</answer></think>\nI give up", entry)
    assert (v.detail["source"], v.detail["extracted"], v.reward) == ("final_line", "I give up", 0.0)


def test_think_require_without_closing_tag_finds_no_answer():
    entry = _gcd_entry()
    v = score(f"<answer>{entry['answer']}</answer>", entry, think="require")
    assert (v.reward, v.detail["source"]) == (0.0, "none")
    assert "think=require" in v.detail["reason"]


def test_think_ignore_reads_tags_inside_thinking():
    entry = _gcd_entry()
    v = score(f"<think><answer>{entry['answer']}</answer></think> no tags here", entry, think="ignore")
    assert (v.reward, v.detail["source"]) == (1.0, "tag")


def test_boxed_answer_is_the_first_fallback():
    entry = _gcd_entry()
    v = score(f"So \\boxed{{{entry['answer']}}}.\nDone.", entry)
    assert (v.reward, v.detail["source"]) == (1.0, "boxed")


def test_final_line_is_the_last_fallback():
    entry = _gcd_entry()
    v = score(f"The gcd is easy.\n{entry['answer']}\n", entry)
    assert (v.reward, v.detail["source"], v.detail["extracted"]) == (1.0, "final_line", entry["answer"])


def test_require_tags_ignores_boxed_and_final_line():
    entry = _gcd_entry()
    v = score(f"\\boxed{{{entry['answer']}}}\n{entry['answer']}", entry, require_tags=True)
    assert (v.reward, v.detail["source"], v.detail["extracted"]) == (0.0, "none", None)


def test_multi_line_answer_in_tags_is_kept_whole():
    ds, entries = generated("n_queens")
    entry = entries[0]
    assert "\n" in entry["answer"]
    v = score(f"<answer>\n{entry['answer']}\n</answer>", over_the_wire(entry))
    assert v.reward == 1.0 and v.detail["extracted"] == entry["answer"]


def test_json_answer_is_judged_by_validity():
    _, entries = generated("graph_color")
    entry = entries[0]
    colouring = json.dumps(entry["metadata"]["possible_answer"], indent=1)
    v = score(f"<answer>{colouring}</answer>", over_the_wire(entry))
    assert v.reward == 1.0 and v.detail["expected"] is None


def test_json_string_ground_truth_scores_like_the_object():
    entry = _gcd_entry()
    completion = f"<answer>{entry['answer']}</answer>"
    assert score(completion, json.dumps(entry)).reward == score(completion, entry).reward == 1.0


def test_partial_credit_is_kept_by_default_and_dropped_by_binary():
    entry = _gcd_entry()
    completion = f"<answer>{entry['answer']} is the gcd</answer>"
    partial = score(completion, entry)
    assert 0.0 < partial.reward < 1.0 and partial.reward == partial.detail["score"]
    assert score(completion, entry, binary=True).reward == 0.0
    assert score(f"<answer>{entry['answer']}</answer>", entry, binary=True).reward == 1.0


def test_unknown_option_is_invalid():
    assert score("<answer>1</answer>", _gcd_entry(), strict=True).status == "invalid"


# --- entries the scorer can't use -------------------------------------------------------------------

def test_unknown_dataset_is_invalid_and_names_close_ones():
    v = score("<answer>1</answer>", {"question": "?", "answer": "1", "metadata": {"source_dataset": "zebra_puzle"}})
    assert v.status == "invalid"
    assert "zebra_puzle" in v.detail["error"] and "zebra_puzzles" in v.detail["error"]


def test_composite_as_a_source_dataset_is_invalid():
    v = score("<answer>1</answer>", {"answer": "1", "metadata": {"source_dataset": "composite"}})
    assert v.status == "invalid" and "sub-dataset" in v.detail["error"]


@pytest.mark.parametrize("ground_truth", [
    None, 42, ["answer"], "not json", '"a json string"',
    {"answer": "1"},
    {"answer": "1", "metadata": "gcd"},
    {"answer": "1", "metadata": {"source_index": 0}},
    {"answer": "1", "metadata": {"source_dataset": 7}},
    {"metadata": {"source_dataset": "gcd"}},
    {"answer": 12, "metadata": {"source_dataset": "gcd"}},
])
def test_malformed_entry_is_invalid(ground_truth):
    v = score("<answer>1</answer>", ground_truth)
    assert v.status == "invalid" and v.reward == 0.0 and v.detail["error"]


def test_metadata_the_scorer_needs_but_lacks_is_invalid():
    _, entries = generated("word_ladder")
    entry = over_the_wire(entries[0])
    del entry["metadata"]["start_word"]
    v = score(f"<answer>{entries[0]['answer']}</answer>", entry)
    assert v.status == "invalid" and "start_word" in v.detail["error"]


def test_scorer_raising_on_the_answer_is_an_error_not_invalid():
    ds, entries = generated("prime_factorization")
    with pytest.raises(ValueError):
        ds.score_answer("many", entries[0])
    v = score("<answer>many</answer>", over_the_wire(entries[0]))
    assert (v.status, v.reward) == ("error", 0.0) and "ValueError" in v.detail["error"]
    # the next item is unaffected
    assert score(f"<answer>{entries[1]['answer']}</answer>", over_the_wire(entries[1])).reward == 1.0


# --- scores the engine can't vouch for (a dataset registered the way third parties do) ----------------

@dataclass
class _FixedScoreConfig:
    seed: Optional[int] = None
    size: int = 1


class _FixedScoreDataset(ProceduralDataset):
    """Scores every answer with the number written in the entry's metadata."""

    def __init__(self, config: _FixedScoreConfig):
        super().__init__(config=config, seed=config.seed, size=config.size)

    def __getitem__(self, idx: int) -> dict:
        return {"question": "?", "answer": "a", "metadata": {"source_dataset": "test_fixed_score", "score": 0.5}}

    def score_answer(self, answer, entry):
        return float(entry["metadata"]["score"])


@pytest.fixture
def fixed_score_dataset():
    register_dataset("test_fixed_score", _FixedScoreDataset, _FixedScoreConfig)
    yield lambda s: {"question": "?", "answer": "a", "metadata": {"source_dataset": "test_fixed_score", "score": s}}
    del DATASETS["test_fixed_score"]


def test_datasets_registered_at_run_time_are_scored(fixed_score_dataset):
    assert score("<answer>a</answer>", fixed_score_dataset(0.5)).reward == 0.5


@pytest.mark.parametrize("raw, reward", [(1.7, 1.0), (-0.3, 0.0)])
def test_scores_outside_the_unit_interval_are_clamped(fixed_score_dataset, raw, reward):
    v = score("<answer>a</answer>", fixed_score_dataset(raw))
    assert (v.status, v.reward, v.detail["score"]) == ("ok", reward, raw)
    assert "clamped" in v.detail["reason"]


@pytest.mark.parametrize("raw", [math.nan, math.inf])
def test_non_finite_scores_are_errors(fixed_score_dataset, raw):
    v = score("<answer>a</answer>", fixed_score_dataset(raw))
    assert (v.status, v.reward) == ("error", 0.0) and "finite" in v.detail["error"]


# --- configs, mixtures ------------------------------------------------------------------------------

@pytest.mark.parametrize("name, config, near_miss", [
    # answers the default config would judge differently from the generating one
    ("time_intervals", {"max_time_difference_seconds": 3600, "task_types": ["time_seconds"]},
     lambda a: a[:-1] + str((int(a[-1]) + 5) % 10)),
    ("decimal_arithmetic", {"min_num_decimal_places": 6, "max_num_decimal_places": 6},
     lambda a: str(__import__("decimal").Decimal(a) + __import__("decimal").Decimal("0.0005"))),
    ("word_ladder", {"min_word_length": 5, "max_word_length": 5}, lambda a: a),
    ("puzzle24", {"min_value": 2, "max_value": 9}, lambda a: a),
])
def test_entries_from_non_default_configs_score_as_their_generator_scores_them(name, config, near_miss):
    ds = reasoning_gym.create_dataset(name, size=PER_DATASET, seed=SEED, **config)
    default = reasoning_gym.create_dataset(name, size=1, seed=SEED)
    for entry in ds:
        answer = near_miss(entry["answer"])
        v = score(f"<answer>{answer}</answer>", over_the_wire(entry))
        assert (v.status, v.reward) == ("ok", ds.score_answer(answer, entry)), v.detail
    differs = []
    for entry in ds:
        try:
            differs.append(default.score_answer(near_miss(entry["answer"]), entry) != ds.score_answer(
                near_miss(entry["answer"]), entry))
        except Exception:
            differs.append(True)
    assert name == "puzzle24" or any(differs), "test answers should tell the configs apart"


def test_composite_entries_route_to_their_sub_dataset():
    config = CompositeConfig(size=8, seed=SEED, datasets=[
        DatasetSpec("zebra_puzzles", 1.0, {}),
        DatasetSpec("knights_knaves", 1.0, {}),
        DatasetSpec("time_intervals", 1.0, {"max_time_difference_seconds": 7200}),
    ])
    mixture = CompositeDataset(config)
    sources = set()
    for entry in mixture:
        sources.add(entry["metadata"]["source_dataset"])
        for answer in (entry["answer"], "wrong"):
            completion = f"<answer>{answer}</answer>"
            assert score(completion, over_the_wire(entry)).reward == rg_reference(mixture, completion, entry)
    assert len(sources) > 1


def test_scorers_are_built_once_per_dataset_and_config():
    _, entries = generated("zebra_puzzles")
    score("<answer>x</answer>", entries[0])
    before = rg_engine._scorer.cache_info()
    for entry in entries:
        score("<answer>x</answer>", entry)
    after = rg_engine._scorer.cache_info()
    assert after.misses == before.misses and after.hits == before.hits + len(entries)


# --- answers and ground truths that scorers would run as code ---------------------------------------

PAYLOAD = "__import__('os').environ.setdefault('LOGIC_VERIFIER_PWNED', '1')"


@pytest.mark.parametrize("name", sorted(ANSWER_EVALUATED))
def test_answers_that_would_run_as_code_are_refused(name):
    _, entries = generated(name)
    for answer in (PAYLOAD, f"[{PAYLOAD}]", "().__class__", "open('/etc/passwd')", "9**9**9**9", "[0]*10**9"):
        v = score(f"<answer>{answer}</answer>", over_the_wire(entries[0]))
        assert (v.status, v.reward, v.detail["score"]) == ("ok", 0.0, None), answer
        assert "evaluates answers as code" in v.detail["reason"]
    assert "LOGIC_VERIFIER_PWNED" not in os.environ


@pytest.mark.parametrize("name", sorted(GROUND_TRUTH_EVALUATED))
def test_ground_truths_that_would_run_as_code_are_invalid(name):
    _, entries = generated(name)
    entry = over_the_wire(entries[0])
    path, _ = GROUND_TRUTH_EVALUATED[name]
    target = entry
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = PAYLOAD
    v = score("<answer>1</answer>", entry)
    assert v.status == "invalid" and "evaluated as code" in v.detail["error"]
    assert "LOGIC_VERIFIER_PWNED" not in os.environ


# Modules that call eval / parse_expr only while generating (or on their own parser), read and
# cleared by hand; a new module with such a call must be reviewed and added to a guard table.
_EVALS_ONLY_TO_GENERATE = {"basic_arithmetic", "codeio", "gsm_symbolic", "propositional_logic"}


def test_every_dataset_module_that_evaluates_text_is_reviewed():
    evaluating = set()
    for name, (cls, _) in DATASETS.items():
        source = Path(inspect.getfile(cls)).parent if cls.__module__.count(".") > 2 else Path(inspect.getfile(cls))
        files = source.rglob("*.py") if source.is_dir() else [source]
        if any(re.search(r"(?<![\w.])(eval|exec)\(|parse_expr\(|sympify\(", f.read_text()) for f in files):
            evaluating.add(name)
    reviewed = set(ANSWER_EVALUATED) | set(GROUND_TRUTH_EVALUATED) | _EVALS_ONLY_TO_GENERATE
    assert evaluating <= reviewed, sorted(evaluating - reviewed)


@pytest.mark.parametrize("text", ["\n  " + PAYLOAD, "\t" + PAYLOAD, f"[1, {PAYLOAD}]", "[x.y]", "[x[0]]",
                                  "[_]", "[exit]", "[*x]", "[i for i in x]", "['a' * 10**9]"])
def test_guard_refuses_python_code_however_it_is_wrapped(text):
    assert unsafe_reason(text, "python")


@pytest.mark.parametrize("text", [PAYLOAD + "!", "(sin)(x)!", "x.y!", "preview(x)", "sympify(x)!", "lambda: 1",
                                  "sin('x')", "2**2**2", "x**100000", "exp(x=1)"])
def test_guard_refuses_sympy_code_however_it_is_wrapped(text):
    assert unsafe_reason(text, "sympy")


@pytest.mark.parametrize("text, evaluator", [
    ("1 2 3\n4 5 6", "python"), ("['a', 'b']", "python"), ("[[1, 0], [-1, 2]]", "python"), ("it's 24", "python"),
    ("x**2/2 + sin(3*x) + C", "sympy"), ("(8 - 5)*(6 + 2)", "sympy"), ("x!", "sympy"), ("5*4 + 8 -", "sympy"),
])
def test_guard_lets_plain_answers_through(text, evaluator):
    assert unsafe_reason(text, evaluator) is None
