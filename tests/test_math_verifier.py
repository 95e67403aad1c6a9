"""The `math` task against real math-verify."""
import json
from pathlib import Path

import pytest

import verifiers

REGRESSIONS = [json.loads(l) for l in (Path(__file__).parent / "data" / "math_verify_regressions.jsonl").open()]


def score(completion, gold, **options):
    return verifiers.score("math", completion, gold, options)


@pytest.mark.parametrize("row", REGRESSIONS, ids=lambda r: r["pred"][:40])
def test_math_verify_regressions(row):
    assert score(row["pred"], row["gold"]).reward == row["expected"]


@pytest.mark.parametrize("pred,gold", [
    (r"\boxed{\frac{1}{2}}", "0.5"),
    (r"\boxed{0.5}", r"\frac12"),
    (r"\boxed{\{1, 2\}}", r"\{2, 1\}"),
    (r"\boxed{[0, 1)}", r"[0,1)"),
    (r"\boxed{x = 2}", "2"),
    (r"\boxed{\begin{pmatrix}1 & 2\\3 & 4\end{pmatrix}}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}"),
    (r"\boxed{30^\circ}", "30"),
    (r"\boxed{50\%}", "0.5"),
    (r"\boxed{1,000}", "1000"),
])
def test_equivalent_forms_score_one(pred, gold):
    assert score(pred, gold).reward == 1.0


def test_wrong_answer_scores_zero():
    v = score(r"\boxed{3}", "4")
    assert (v.reward, v.status) == (0.0, "ok")


def test_detail_shows_extracted_and_parsed_gold():
    v = score(r"\boxed{\frac{2}{4}}", "1/2")
    assert v.detail["extracted"] == r"\frac{2}{4}" and v.detail["gold"] == "1/2"


def test_only_text_after_last_think_counts():
    assert score(r"<think>\boxed{7}</think> so \boxed{8}", "7").reward == 0.0


def test_think_require_gives_zero_without_close_tag():
    v = score(r"\boxed{7}", "7", think="require")
    assert v.reward == 0.0 and "think" in v.detail["reason"]


def test_think_ignore_reads_boxes_inside_thinking():
    assert score(r"<think>\boxed{7}</think> done", "7", think="ignore").reward == 1.0


def test_answer_phrase_fallback_without_box():
    v = score("Therefore the answer is 12.", "12")
    assert v.reward == 1.0 and v.detail["source"] == "answer_phrase"


def test_last_expression_fallback_without_box_or_phrase():
    assert score("We get $x = 12$", "12").reward == 1.0


def test_require_box_rejects_unboxed_answer():
    assert score("The answer is 12.", "12", require_box=True).reward == 0.0


def test_several_candidates_do_not_match_single_gold():
    assert score(r"\boxed{3 \text{ or } 5}", "3").reward == 0.0
    assert score(r"\boxed{3, 5}", "5").reward == 0.0


def test_several_boxes_match_a_multi_valued_gold():
    assert score(r"\boxed{3} and \boxed{5}", r"\{3, 5\}").reward == 1.0


def test_list_of_golds_accepts_any():
    assert score(r"\boxed{6}", ["5", "6"]).reward == 1.0


def test_answer_object_gold():
    assert score(r"\boxed{6}", {"answer": "6"}).reward == 1.0


def test_numeric_gold():
    assert score(r"\boxed{2.5}", 2.5).reward == 1.0


def test_text_answer_matches_by_normalised_string():
    v = score(r"\boxed{\text{Monday}}", "monday")
    assert v.reward == 1.0


def test_no_answer_scores_zero_with_reason():
    v = score("I don't know.", "3")
    assert v.reward == 0.0 and v.status == "ok"


@pytest.mark.parametrize("gold", [None, True, {"solution": "3"}, "", [], [{"a": 1}]])
def test_unusable_gold_is_invalid(gold):
    v = score(r"\boxed{3}", gold)
    assert v.status == "invalid" and v.detail["error"]


def test_unknown_option_is_invalid():
    v = verifiers.score("math", r"\boxed{3}", "3", {"requre_box": True})
    assert v.status == "invalid" and "requre_box" in v.detail["problems"][0]
