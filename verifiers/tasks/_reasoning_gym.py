"""Reasoning Gym as a scoring engine: entry in, that dataset's own score out.

``reasoning_gym`` is imported on first use, not with this module: it costs
~0.7 s and ~60 MB per process (it pulls in matplotlib via cellpylib), and
every worker imports every verifier module at start.

One scorer object per (dataset, config) lives in an LRU cache.  Scorers are
built with ``size=1`` so datasets that pre-generate at construction (acre,
for one) stay cheap, and with the default config except for the few whose
``score_answer`` reads the config: those get the config the entry's own
metadata implies (see ``_CONFIG_FROM_METADATA``).
"""
from __future__ import annotations

import math
import numbers
from functools import lru_cache
from typing import Any, Callable

from verifiers.base import InvalidInput, json_object
from verifiers.tasks._rg_guard import ANSWER_EVALUATED, GROUND_TRUTH_EVALUATED, unsafe_reason

# What GET /tasks advertises, without importing reasoning_gym at start-up:
# the registry of reasoning-gym 0.1.25 less "composite" (a mixture whose
# entries name their sub-dataset).  A test compares it to the installed
# registry; scoring itself always consults the live registry.
KNOWN_DATASETS: tuple[str, ...] = (
    "ab", "acre", "advanced_geometry", "aiw", "arc_1d", "arc_agi", "base_conversion", "basic_arithmetic", "bf",
    "binary_alternation", "binary_matrix", "bitwise_arithmetic", "boxnet", "caesar_cipher",
    "calendar_arithmetic", "chain_sum", "circuit_logic", "codeio", "coin_flip", "color_cube_rotation",
    "complex_arithmetic", "count_bits", "count_primes", "countdown", "course_schedule", "cryptarithm",
    "decimal_arithmetic", "decimal_chain_sum", "dice", "emoji_mystery", "family_relationships", "figlet_font",
    "fraction_simplification", "futoshiki", "game_of_life", "game_of_life_halting", "gcd", "graph_color",
    "group_anagrams", "gsm_symbolic", "intermediate_integration", "isomorphic_strings", "jugs", "kakurasu",
    "knight_swap", "knights_knaves", "largest_island", "lcm", "leg_counting", "letter_counting", "letter_jumble",
    "list_functions", "mahjong_puzzle", "manipulate_matrix", "maze", "mini_sudoku", "modulo_grid", "n_queens",
    "needle_haystack", "number_filtering", "number_format", "number_sequence", "number_sorting",
    "palindrome_generation", "palindrome_partitioning", "path_star", "polynomial_equations",
    "polynomial_multiplication", "pool_matrix", "power_function", "prime_factorization", "products",
    "propositional_logic", "puzzle24", "quantum_lock", "ransom_note", "rearc", "rectangle_count",
    "rotate_matrix", "rotten_oranges", "rubiks_cube", "rush_hour", "self_reference", "sentence_reordering",
    "shortest_path", "simple_equations", "simple_geometry", "simple_integration", "sokoban", "spell_backward",
    "spiral_matrix", "string_insertion", "string_manipulation", "string_splitting", "string_synthesis", "sudoku",
    "survo", "syllogism", "time_intervals", "tower_of_hanoi", "tsumego", "word_ladder", "word_sequence_reversal",
    "word_sorting", "zebra_puzzles",
)

MIXTURES = frozenset({"composite"})


def _decimal_arithmetic(md: dict) -> dict[str, int]:
    lo, hi = md["difficulty"]["decimal_places"]
    return {"min_num_decimal_places": int(lo), "max_num_decimal_places": int(hi), "precision": max(12, int(hi) + 2)}


def _puzzle24(md: dict) -> dict[str, int]:
    lo, hi = md["difficulty"]["value"]
    return {"min_value": int(lo), "max_value": int(hi)}


def _time_intervals(md: dict) -> dict[str, int]:
    d = md["difficulty"]
    return {"max_time_difference_seconds": int(d["max_time_difference_seconds"]),
            "max_date_difference_days": int(d["max_date_difference_days"])}


def _word_ladder(md: dict) -> dict[str, int]:
    # The scorer's vocabulary only holds the word lengths its config generates.
    n = len(md["end_word"])
    return {"min_word_length": n, "max_word_length": n}


# Datasets whose score_answer reads config fields; the entry's metadata
# records the generating config's values.  (polynomial_equations' penalty
# factors and the ARC board format are not recorded: defaults are used.)
_CONFIG_FROM_METADATA: dict[str, Callable[[dict], dict[str, int]]] = {
    "decimal_arithmetic": _decimal_arithmetic,
    "puzzle24": _puzzle24,
    "time_intervals": _time_intervals,
    "word_ladder": _word_ladder,
}


def _tuples(grid: Any) -> Any:
    return tuple(_tuples(x) for x in grid) if isinstance(grid, list) else grid


def _restore_arc_grids(md: dict) -> dict:
    # Grids are tuples of tuples and the scorer compares with ==; JSON made them lists.
    return {**md, **{k: _tuples(md[k]) for k in ("input", "output") if isinstance(md.get(k), list)}}


# Undo what a JSON round trip does to metadata a scorer compares by type.
_RESTORE_METADATA: dict[str, Callable[[dict], dict]] = {
    "arc_agi": _restore_arc_grids,
    "rearc": _restore_arc_grids,
}


def parse_entry(ground_truth: Any) -> dict[str, Any]:
    """The Reasoning Gym entry in ``ground_truth`` (a dict or its JSON text), checked for shape."""
    entry = json_object(ground_truth, 'a Reasoning Gym entry {"question", "answer", "metadata": '
                                      '{"source_dataset", ...}} (an object or its JSON text)')
    md = entry.get("metadata")
    if not isinstance(md, dict) or not isinstance(md.get("source_dataset"), str):
        raise InvalidInput('ground truth needs "metadata" with a string "source_dataset", '
                           "as Reasoning Gym generators produce it")
    if "answer" not in entry or not (entry["answer"] is None or isinstance(entry["answer"], str)):
        raise InvalidInput('ground truth needs "answer": a string, or null for datasets scored by validity')
    restore = _RESTORE_METADATA.get(md["source_dataset"])
    return {**entry, "metadata": restore(md)} if restore else entry


def registered() -> frozenset[str]:
    from reasoning_gym.factory import DATASETS
    return frozenset(DATASETS)


@lru_cache(maxsize=256)
def _scorer(dataset: str, overrides: tuple[tuple[str, int], ...]) -> Callable[[str | None, dict], Any]:
    from reasoning_gym import create_dataset
    return create_dataset(dataset, size=1, seed=0, **dict(overrides)).score_answer


def scorer_for(entry: dict[str, Any]) -> Callable[[str | None, dict], Any]:
    """The dataset's own ``score_answer``, for the config the entry was generated with."""
    name = entry["metadata"]["source_dataset"]
    if name in MIXTURES:
        raise InvalidInput(f"{name!r} is a mixture; its entries carry their sub-dataset's name in "
                           "metadata.source_dataset")
    if name not in registered():
        import difflib
        close = difflib.get_close_matches(name, sorted(registered() - MIXTURES), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InvalidInput(f"unknown Reasoning Gym dataset {name!r}{hint} (GET /tasks lists them)")
    overrides: dict[str, int] = {}
    derive = _CONFIG_FROM_METADATA.get(name)
    if derive:
        try:
            overrides = derive(entry["metadata"])
        except (KeyError, TypeError, ValueError):
            overrides = {}  # metadata without the recorded config: score with the defaults
    try:
        return _scorer(name, tuple(sorted(overrides.items())))
    except (AssertionError, ValueError, KeyError) as e:
        raise InvalidInput(f"{name}: the config implied by the entry's metadata {overrides} is rejected by "
                           f"reasoning_gym: {type(e).__name__}: {e}") from None


def check_ground_truth(entry: dict[str, Any]) -> None:
    spec = GROUND_TRUTH_EVALUATED.get(entry["metadata"]["source_dataset"])
    if not spec:
        return
    path, evaluator = spec
    value: Any = entry
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, str):
        reason = unsafe_reason(value, evaluator)
        if reason:
            raise InvalidInput(f"ground truth field {'.'.join(path)} would be evaluated as code by the "
                               f"dataset's scorer and is not a plain expression ({reason})")


def answer_refusal(dataset: str, answer: str | None) -> str | None:
    """Why ``answer`` must not reach this dataset's scorer, or ``None``."""
    evaluator = ANSWER_EVALUATED.get(dataset)
    if evaluator is None or answer is None:
        return None
    reason = unsafe_reason(answer, evaluator)
    return f"the {dataset} scorer evaluates answers as code and this one is not a plain expression ({reason})" \
        if reason else None


def run_scorer(scorer: Callable[[str | None, dict], Any], answer: str | None, entry: dict[str, Any]) -> float:
    """``scorer(answer, entry)`` as a float; an entry the scorer can't read is ``InvalidInput``.

    A scorer that raises on this answer but scores the entry's own answer is
    failing on the answer (a scorer bug, status ``error``: the exception
    propagates); one that raises on its own reference can't use the entry.
    """
    try:
        raw = scorer(answer, entry)
    except Exception as exc:
        try:
            scorer(entry["answer"], entry)
        except Exception as probe:
            raise InvalidInput(f"{entry['metadata']['source_dataset']}: the dataset's scorer cannot use this "
                               f"entry: {type(probe).__name__}: {probe}") from None
        raise exc
    if not isinstance(raw, numbers.Real):
        raise TypeError(f"scorer returned {type(raw).__name__}, not a number")
    return float(raw)


def clamp(score: float) -> float:
    if not math.isfinite(score):
        raise ValueError(f"scorer returned {score}, not a finite number")
    return min(1.0, max(0.0, score))
