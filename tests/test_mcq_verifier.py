"""The `mcq` task: reading the final choice."""
import pytest

import verifiers


def score(completion, gold, **options):
    return verifiers.score("mcq", completion, gold, options)


@pytest.mark.parametrize("completion", [
    r"\boxed{C}", r"\boxed{\text{(C)}}", "Answer: C", "The correct answer is (C).", "**Answer: C**",
    "I'd go with (C)", "Final answer: C",
])
def test_reads_the_choice(completion):
    assert score(completion, "C").reward == 1.0


def test_wrong_choice_scores_zero():
    v = score("Answer: B", "C")
    assert (v.reward, v.detail["extracted"]) == (0.0, "B")


def test_last_stated_answer_wins():
    assert score("Answer: A ... on reflection, Answer: C", "C").reward == 1.0


def test_several_letters_earn_nothing():
    v = score("Answer: A or C", "C")
    assert v.reward == 0.0 and v.detail["reason"] == "several choices given"


def test_several_boxed_letters_earn_nothing():
    assert score(r"\boxed{A, C}", "C").reward == 0.0


def test_choice_text_is_recognised():
    gt = {"answer": "B", "choices": ["London", "Paris", "Rome"]}
    assert score("So it must be Paris", gt).reward == 1.0


def test_lowercase_article_is_not_a_choice():
    assert score("the answer is a bit unclear", "A").reward == 0.0


def test_thinking_is_ignored():
    assert score("<think>Answer: C</think>Answer: B", "C").reward == 0.0


def test_gold_in_parentheses_accepted():
    assert score("Answer: D", "(D)").reward == 1.0


@pytest.mark.parametrize("gold", ["K", "", 3, {"choices": ["a"]}, {"answer": "C", "choices": ["a", "b"]}])
def test_unusable_gold_is_invalid(gold):
    assert score("Answer: C", gold).status == "invalid"


@pytest.mark.parametrize("completion", [
    "<think>A is out, so B or C</think><answer>C</answer>", "<answer> (C) </answer>", r"<answer>\boxed{C}</answer>",
    "<answer>The answer is C</answer>", "(A) looks wrong. <answer>C</answer>",
])
def test_choice_is_read_inside_the_last_answer_tag(completion):
    v = score(completion, "C")
    assert v.reward == 1.0, v.detail


def test_a_choice_outside_the_answer_tag_is_not_the_answer():
    assert score("<answer>A</answer> (C)", "C").reward == 0.0


@pytest.mark.parametrize("tag", ["A, C", "A or C", "I think C"])
def test_an_answer_tag_naming_several_letters_earns_nothing(tag):
    v = score(f"<answer>{tag}</answer>", "C")
    assert v.reward == 0.0 and v.detail["reason"] == "several choices given"


@pytest.mark.parametrize("completion", ["C", "C.", "Working...\n\n**C**", "Working...\n(C"])
def test_a_last_line_that_is_a_lone_letter_is_the_choice(completion):
    # "Answer with the letter only"
    assert score(completion, "C").reward == 1.0


def test_a_boxed_letter_after_the_answer_tag_is_the_later_statement():
    assert score(r"Format: <answer>X</answer>. So \boxed{C}", "C").reward == 1.0
