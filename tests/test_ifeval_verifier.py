"""The ifeval task: IFEval's instruction checks, strict / loose / binary scoring."""
from __future__ import annotations

import json
import pathlib
import re

import pytest

from verifiers import score
from verifiers.tasks._ifeval_instructions import INSTRUCTIONS, count_placeholders, find_title
from verifiers.tasks._ifeval_text import count_sentences, split_sentences

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "ifeval_sample.jsonl"


def gt(*pairs: tuple[str, dict | None]) -> dict:
    return {"instruction_id_list": [p[0] for p in pairs], "kwargs": [p[1] for p in pairs]}


def verdict(completion: str, ground_truth, prompt: str | None = None, **options):
    return score("ifeval", completion, ground_truth, options, prompt)


def followed(instruction_id: str, kwargs: dict | None, response: str, prompt: str | None = None) -> bool:
    v = verdict(response, gt((instruction_id, kwargs)), prompt)
    assert v.status == "ok", v.detail
    return v.reward == 1.0


# Each row: instruction id, kwargs, a response that follows it, one that doesn't.
CASES = {
    "keywords": [
        ("keywords:existence", {"keywords": ["apple", "Banana"]},
         "I like APPLE pie and banana bread.", "I like apple pie."),
        ("keywords:frequency", {"keyword": "data", "frequency": 3, "relation": "at least"},
         "Data beats opinions: more data, better data.", "Data beats opinions: more data."),
        ("keywords:frequency", {"keyword": "very", "frequency": 2, "relation": "less than"},
         "It is very good.", "It is very, very good."),
        ("keywords:forbidden_words", {"forbidden_words": ["bad", "awful"]},
         "A badge is a fine thing.", "That was simply Awful."),
        ("keywords:letter_frequency", {"letter": "z", "let_frequency": 3, "let_relation": "at least"},
         "Zebras zigzag lazily.", "Zebras run fast."),
    ],
    "language": [
        ("language:response_language", {"language": "fr"},
         "Le chat dort sur le canapé pendant que les enfants jouent dans le jardin avec leurs amis.",
         "The cat sleeps on the sofa while the children play in the garden with their friends."),
    ],
    "length_constraints": [
        ("length_constraints:number_words", {"num_words": 5, "relation": "less than"},
         "Just four words here.", "This sentence has six words total."),
        ("length_constraints:number_words", {"num_words": 6, "relation": "at least"},
         "This sentence has six words total.", "Just four words here."),
        ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "at least"},
         "Mr. Smith went home. He slept. Then he woke up!", "Mr. Smith went home. He slept."),
        ("length_constraints:number_paragraphs", {"num_paragraphs": 3},
         "One.\n***\nTwo.\n***\nThree.", "One.\n***\nTwo."),
        ("length_constraints:nth_paragraph_first_word",
         {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "however"},
         'Intro text.\n\n"However, this works.', "Intro text.\n\nBut this does not."),
    ],
    "detectable_content": [
        ("detectable_content:postscript", {"postscript_marker": "P.S."},
         "Hello there.\n\nP.S. See you soon.", "Hello there. PS see you soon."),
        ("detectable_content:postscript", {"postscript_marker": "P.P.S"},
         "Hello.\nP.S. one\np. p. s. two", "Hello.\nP.S. only one"),
        ("detectable_content:number_placeholders", {"num_placeholders": 2},
         "Meet me at [address] on [date].", "Meet me at [address] tomorrow."),
    ],
    "detectable_format": [
        ("detectable_format:number_bullet_lists", {"num_bullets": 3},
         "Points:\n* one\n* two\n- three", "Points:\n* one\n**not a bullet**\n- two"),
        ("detectable_format:constrained_response", None,
         "My answer is maybe.", "Maybe, it depends."),
        ("detectable_format:number_highlighted_sections", {"num_highlights": 2},
         "See *the first part* and **the second part**.", "See *the first part* and ** **."),
        ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
         "Section 1\nIntro\nSection 2\nBody", "Section 1\nIntro and body"),
        ("detectable_format:json_format", None,
         '```json\n{"name": "Ada", "born": 1815}\n```', 'Here it is: {"name": "Ada"}'),
        ("detectable_format:title", None,
         "<<Ode to Rain>>\nDrops on the window.", "<<   >>\nDrops on the window."),
    ],
    "combination": [
        ("combination:repeat_prompt", {"prompt_to_repeat": "Write a haiku about rain."},
         "Write a haiku about rain.\nSoft drops on the roof...", "Here is a haiku about rain:\nSoft drops..."),
        ("combination:two_responses", None,
         "First answer.\n******\nSecond answer.", "Same answer.\n******\nSame answer."),
    ],
    "change_case": [
        ("change_case:english_capital", None,
         "THE WEATHER TODAY IS SUNNY AND WARM, SO WE WILL GO TO THE BEACH.",
         "The weather today is sunny and warm, so we will go to the beach."),
        ("change_case:english_lowercase", None,
         "the weather today is sunny and warm, so we will go to the beach.",
         "the weather today is sunny and warm, so we will go to the Beach."),
        ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "less than"},
         "Only ONE shouting word.", "TWO LOUD words."),
    ],
    "startend": [
        ("startend:end_checker", {"end_phrase": "Any other questions?"},
         'Thanks for asking. Any other questions?"', "Any other questions? Bye."),
        ("startend:quotation", None, '  "Wrapped in quotes."\n', 'Not "wrapped".'),
    ],
    "punctuation": [
        ("punctuation:no_comma", None, "No commas in this one.", "Yes, there is one."),
    ],
}

ALL_CASES = [(fam, *c) for fam, rows in CASES.items() for c in rows]
CASE_IDS = [f"{c[1]}-{i}" for i, c in enumerate(ALL_CASES)]


def test_every_supported_instruction_has_cases():
    assert {c[1] for c in ALL_CASES} == set(INSTRUCTIONS)
    assert len(INSTRUCTIONS) == 25


@pytest.mark.parametrize("family,iid,kwargs,good,bad", ALL_CASES, ids=CASE_IDS)
def test_response_that_follows_the_instruction_earns_full_reward(family, iid, kwargs, good, bad):
    assert followed(iid, kwargs, good)


@pytest.mark.parametrize("family,iid,kwargs,good,bad", ALL_CASES, ids=CASE_IDS)
def test_response_that_breaks_the_instruction_earns_nothing(family, iid, kwargs, good, bad):
    assert not followed(iid, kwargs, bad)


# --- specifics of individual checks -------------------------------------------


def test_keywords_are_literal_text_not_regexes():
    assert followed("keywords:existence", {"keywords": ["C++"]}, "I write C++ daily.")
    assert not followed("keywords:existence", {"keywords": ["C++"]}, "I write CCC daily.")


def test_keyword_frequency_counts_substrings_case_insensitively():
    v = verdict("Cat, cats, CATALOG.", gt(("keywords:frequency", {"keyword": "cat", "frequency": 3, "relation": "at least"})))
    assert v.reward == 1.0 and v.detail["instructions"][0]["observed"] == {"count": 3}


def test_hyphenated_capital_word_counts_once():
    kwargs = {"capital_frequency": 2, "capital_relation": "at least"}
    assert not followed("change_case:capital_word_frequency", kwargs, "the WELL-KNOWN fact")
    assert followed("change_case:capital_word_frequency", kwargs, "the WELL-KNOWN USA fact")


def test_sentence_splitter_keeps_abbreviations_decimals_and_initials_together():
    assert split_sentences("Dr. Smith paid 3.50 dollars to J. R. Doe at example.com today. Then he left.") == [
        "Dr. Smith paid 3.50 dollars to J. R. Doe at example.com today.",
        "Then he left.",
    ]


def test_sentence_splitter_counts_repeated_end_marks_as_one_end():
    # An ellipsis followed by a lower-case word does not end a sentence for Punkt.
    assert count_sentences("Really?! Yes!! Wait... what.") == 3


def test_sentence_splitter_splits_after_a_one_letter_word():
    # IFEval response 1174 (GPT-4): "located in *o*." with the asterisks removed
    # (loose mode) ends a sentence, as in the reference.
    assert split_sentences("I see you're currently located in o. Let's check the weather for you.") == [
        "I see you're currently located in o.",
        "Let's check the weather for you.",
    ]


def test_sentence_splitter_reads_numbered_list_markers_as_punkt_does():
    # Punkt's English model: a marker at the start of the text or after a finished
    # sentence stands alone; one right after a colon joins the text before it.
    assert split_sentences("1. Buy milk.\n2. Buy eggs.") == ["1.", "Buy milk.", "2.", "Buy eggs."]
    assert count_sentences("Here are tips:\n1. Sleep well.\n2. Eat well.") == 4


def test_sentence_splitter_keeps_known_abbreviations():
    assert count_sentences("We met Mr. Smith at 5 p.m. yesterday. He was late.") == 2


def test_text_without_language_features_counts_as_the_requested_language():
    # IFEval's reference credits a response langdetect cannot judge.
    v = verdict("12345 67890", gt(("language:response_language", {"language": "de"})))
    assert v.reward == 1.0 and v.detail["instructions"][0]["observed"] == {"detected": None}


def test_language_detection_is_deterministic():
    text = "Ciao, come stai? Oggi fa bel tempo e andiamo al mare."
    detected = {json.dumps(verdict(text, gt(("language:response_language", {"language": "it"}))).detail) for _ in range(5)}
    assert len(detected) == 1


def test_nth_paragraph_requires_the_paragraph_count_too():
    kwargs = {"num_paragraphs": 3, "nth_paragraph": 1, "first_word": "once"}
    assert not followed("length_constraints:nth_paragraph_first_word", kwargs, "Once upon a time.\n\nThe end.")


def test_paragraph_check_rejects_an_empty_paragraph_between_dividers():
    assert not followed("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "One.\n***\n***\nTwo.")


def test_repeat_prompt_falls_back_to_the_item_prompt():
    assert followed("combination:repeat_prompt", None, "Name a color. Blue.", prompt="Name a color.")
    assert not followed("combination:repeat_prompt", {"prompt_to_repeat": None}, "Blue.", prompt="Name a color.")


@pytest.mark.parametrize("text", [
    "[a] [b", "[[[x]]]", "[a]\n[b]", "[\n]", "x [a] y [] z [c", "[" * 50 + "]", "[a][b][c]\n[[d]",
])
def test_placeholder_count_matches_the_reference_regex(text):
    assert count_placeholders(text) == len(re.findall(r"\[.*?\]", text))


@pytest.mark.parametrize("text", [
    "<<T>>", "<<>>", "<<>>>", "a <<x>> b <<y>>", "<<a\nb>>", "<<<< >>>>", "x<<y", "<< <<t>> >>",
])
def test_title_search_matches_the_reference_regex(text):
    expected = next((t for t in re.findall(r"<<[^\n]+>>", text) if t.lstrip("<").rstrip(">").strip()), None)
    assert find_title(text) == expected


@pytest.mark.parametrize("text", [
    "* a\n* b", "\n\n  * a\n\n- b", "*\nx", "*\n* y", "**bold**\n- x", "  -\n\t* z", "\n \n*a",
])
def test_bullet_count_matches_the_reference_regexes(text):
    ref = len(re.findall(r"^\s*\*[^\*].*$", text, flags=re.MULTILINE)) + len(re.findall(r"^\s*-.*$", text, flags=re.MULTILINE))
    v = verdict(text, gt(("detectable_format:number_bullet_lists", {"num_bullets": ref})))
    assert v.reward == 1.0, v.detail


def test_json_nested_past_the_stack_limit_is_not_json():
    v = verdict("[" * 100_000, gt(("detectable_format:json_format", None)))
    assert v.status == "ok" and v.reward == 0.0


def test_empty_response_follows_no_instruction():
    v = verdict("<think>, , ,</think>   ", gt(("punctuation:no_comma", None)))
    assert v.reward == 0.0 and v.detail["instructions"][0]["observed"] == {"empty_response": True}


# --- scoring ------------------------------------------------------------------


def test_reward_is_the_fraction_of_instructions_followed():
    v = verdict("Yes, done.", gt(
        ("punctuation:no_comma", None),
        ("length_constraints:number_words", {"num_words": 5, "relation": "less than"}),
        ("keywords:existence", {"keywords": ["done"]}),
    ))
    assert v.reward == pytest.approx(2 / 3)
    assert [r["followed"] for r in v.detail["instructions"]] == [False, True, True]
    assert (v.detail["followed"], v.detail["total"]) == (2, 3)


def test_binary_pays_only_when_every_instruction_is_followed():
    two = gt(("punctuation:no_comma", None), ("keywords:existence", {"keywords": ["done"]}))
    partial = verdict("Yes, done.", two, binary=True)
    assert partial.reward == 0.0 and partial.detail["fraction"] == 0.5
    assert verdict("Yes done.", two, binary=True).reward == 1.0


def test_strict_mode_fails_a_response_with_a_preamble_line():
    v = verdict('Sure, here it is:\n"All wrapped up."', gt(("startend:quotation", None)))
    assert v.reward == 0.0 and v.detail["mode"] == "strict"


def test_loose_mode_passes_when_dropping_the_first_line_fixes_it():
    v = verdict('Sure, here it is:\n"All wrapped up."', gt(("startend:quotation", None)), mode="loose")
    assert v.reward == 1.0
    assert v.detail["mode"] == "loose" and v.detail["instructions"][0]["variant"] == "without_first_line"


def test_loose_mode_passes_when_removing_asterisks_fixes_it():
    v = verdict("Thanks. **Any other questions?**", gt(("startend:end_checker", {"end_phrase": "Any other questions?"})),
                mode="loose")
    assert v.reward == 1.0 and v.detail["instructions"][0]["variant"] == "no_asterisks"


def test_loose_mode_still_fails_a_response_no_variant_fixes():
    v = verdict("One, two.\nThree, four.", gt(("punctuation:no_comma", None)), mode="loose")
    assert v.reward == 0.0 and "variant" not in v.detail["instructions"][0]


def test_thinking_is_stripped_before_checking():
    v = verdict("<think>Commas, commas, commas.</think>\nNo commas here.", gt(("punctuation:no_comma", None)))
    assert v.reward == 1.0


def test_think_ignore_checks_the_whole_completion():
    v = verdict("<think>Commas, here.</think>No commas here.", gt(("punctuation:no_comma", None)), think="ignore")
    assert v.reward == 0.0


def test_think_require_pays_nothing_without_closing_tag():
    v = verdict("No commas here.", gt(("punctuation:no_comma", None)), think="require")
    assert v.status == "ok" and v.reward == 0.0 and "think" in v.detail["reason"]


# --- ground truth shapes ------------------------------------------------------


def test_ground_truth_may_be_a_json_string():
    v = verdict("No commas here.", json.dumps(gt(("punctuation:no_comma", None))))
    assert v.status == "ok" and v.reward == 1.0


def test_null_and_unrelated_kwargs_are_ignored():
    # Datasets give every instruction every kwarg name, mostly null.
    kwargs = {"num_words": 3, "relation": "at least", "keywords": None, "language": None, "end_phrase": "ignored"}
    v = verdict("Three whole words.", gt(("length_constraints:number_words", kwargs)))
    assert v.reward == 1.0
    assert v.detail["instructions"][0]["kwargs"] == {"num_words": 3, "relation": "at least"}


@pytest.mark.parametrize("ground_truth,problem", [
    (gt(("keywords:nonexistent", {})), "unknown instruction id"),
    ({"instruction_id_list": ["punctuation:no_comma", "startend:quotation"], "kwargs": [{}]}, "2 instruction ids but 1 kwargs"),
    (gt(("length_constraints:number_words", {"num_words": 10})), "relation"),
    (gt(("length_constraints:number_words", {"num_words": 10, "relation": "at most"})), "relation"),
    (gt(("keywords:frequency", {"keyword": "x", "frequency": -1, "relation": "at least"})), "frequency"),
    (gt(("keywords:letter_frequency", {"letter": "ab", "let_frequency": 1, "let_relation": "at least"})), "letter"),
    (gt(("language:response_language", {"language": "klingon"})), "language"),
    (gt(("combination:repeat_prompt", {})), "prompt_to_repeat"),
    (gt(("punctuation:no_comma", "not an object")), "kwargs must be an object"),
    ({"instruction_id_list": []}, "non-empty"),
    ("{not json", "not valid JSON"),
    (["punctuation:no_comma"], "instruction_id_list"),
])
def test_unusable_ground_truth_is_invalid_and_names_the_problem(ground_truth, problem):
    v = verdict("Anything.", ground_truth)
    assert v.status == "invalid" and v.reward == 0.0
    assert problem in v.detail["error"]


# --- IFEval-format rows -------------------------------------------------------


def _rows():
    return [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("row", _rows(), ids=lambda r: str(r["key"]))
def test_sample_rows_score_as_expected(row):
    ground_truth = {"instruction_id_list": row["instruction_id_list"], "kwargs": row["kwargs"]}
    strict = verdict(row["response"], ground_truth, row["prompt"])
    loose = verdict(row["response"], ground_truth, row["prompt"], mode="loose")
    assert (strict.status, loose.status) == ("ok", "ok")
    assert strict.reward == pytest.approx(row["expected_strict"]), strict.detail
    assert loose.reward == pytest.approx(row["expected_loose"]), loose.detail
