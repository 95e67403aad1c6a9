"""Answer extraction shared by every verifier."""
from verifiers.extract import (
    all_boxed, answer_phrase, answer_tag, boxed_spans, final_line, find_answer_phrase, last_boxed, last_code_block,
    stated_in_tag, strip_thinking,
)


def test_strip_thinking_keeps_text_after_last_close_tag():
    assert strip_thinking("a</think>b</think> c") == " c"


def test_strip_thinking_auto_keeps_everything_without_tag():
    assert strip_thinking("no tags") == "no tags"


def test_strip_thinking_require_gives_none_without_tag():
    assert strip_thinking("unfinished thought", "require") is None


def test_strip_thinking_ignore_keeps_thinking():
    assert strip_thinking("a</think>b", "ignore") == "a</think>b"


def test_boxed_handles_nested_braces():
    assert last_boxed(r"\boxed{\frac{1}{2}}") == r"\frac{1}{2}"


def test_last_boxed_wins_and_fbox_counts():
    assert last_boxed(r"\boxed{1} then \fbox{2}") == "2"


def test_boxed_without_braces_takes_next_token():
    assert all_boxed(r"\boxed 5 and more") == ["5"]


def test_unterminated_box_is_ignored():
    assert all_boxed(r"\boxed{1} \boxed{2") == ["1"]


def test_escaped_brace_does_not_close_box():
    assert last_boxed(r"\boxed{\{1,2\}}") == r"\{1,2\}"


def test_answer_tag_takes_last_and_strips():
    assert answer_tag("<answer>1</answer> <answer>\n 2 \n</answer>") == "2"


def test_answer_tag_nested_in_an_unclosed_one_is_the_inner_one():
    assert answer_tag("<answer>draft <answer>4</answer>") == "4"


def test_answer_tag_is_linear_on_unclosed_tags():
    import time
    t0 = time.process_time()
    assert answer_tag("<answer>" * 200_000 + "</answer>") == ""
    assert answer_tag("<answer>x" * 200_000) is None
    assert time.process_time() - t0 < 5  # the regex it replaced took 16 s on a tenth of this


def test_answer_tag_spans_lines():
    assert answer_tag("<answer>a\nb</answer>") == "a\nb"


def test_answer_phrase_reads_the_answer_is():
    assert answer_phrase("So the answer is $42$.") == "42"


def test_answer_phrase_reads_final_answer_colon():
    assert answer_phrase("Final Answer: x = 3") == "x = 3"


def test_final_line_skips_blank_lines():
    assert final_line("a\nlast one\n\n  \n") == "last one"


def test_last_code_block_with_language():
    block = last_code_block("```python\nprint(1)\n```\ntext\n```cpp\nint main(){}\n```")
    assert (block.language, block.code) == ("cpp", "int main(){}\n")


def test_unterminated_last_code_block_counts():
    block = last_code_block("```python\nprint(1)\n```\n```py\nx = 2\n")
    assert (block.language, block.code) == ("py", "x = 2\n")


def test_a_longer_fence_holds_a_shorter_one():
    # CommonMark: a block opened with four backticks closes at four or more, so it can show ``` inside
    block = last_code_block("````markdown\n```python\nx = 1\n```\n````\nDone.")
    assert (block.language, block.code) == ("markdown", "```python\nx = 1\n```\n")


def test_code_block_extraction_is_linear_on_unclosed_fences():
    import time
    t0 = time.process_time()
    assert last_code_block("```python\n" * 100_000).code == "```python\n" * 99_999
    assert last_code_block("~~~\n```\n" * 50_000) is not None
    assert time.process_time() - t0 < 5  # the regex it replaced did not finish a tenth of this in 10 s


def test_boxed_extraction_is_linear_on_unclosed_boxes():
    import time
    t0 = time.process_time()
    assert boxed_spans("\\boxed{" * 100_000) == []
    assert len(boxed_spans("\\boxed " * 100_000)) == 0
    assert [s.text for s in boxed_spans("\\boxed{" * 50_000 + "\\boxed{7}")] == ["7"]
    assert time.process_time() - t0 < 5  # scanning to the end for each unclosed box did not finish a tenth in 10 s


def test_no_code_block_gives_none():
    assert last_code_block("no code here") is None


def test_answer_phrase_nested_reads_the_innermost():
    assert answer_phrase("Final Answer: The final answer is 7.78.") == "7.78"


def test_answer_phrase_keeps_a_decimal_point():
    assert answer_phrase("So the answer is 3.5. Next we check it.") == "3.5"


def test_answer_phrase_stops_at_a_justification():
    assert answer_phrase("The answer is 5, since 2+3=5.") == "5"
    assert answer_phrase("The answer is 12 because we counted.") == "12"


def test_answer_phrase_stops_at_the_closing_dollar():
    assert answer_phrase(r"Therefore the answer is $\frac{3}{4}$ cups.") == r"\frac{3}{4}"
    assert answer_phrase(r"$\text{so the answer is } 5$ and more") == "5"


def test_answer_phrase_keeps_listed_math_answers_together():
    assert answer_phrase("The answer is $3$ or $5$.") == "3, 5"


def test_answer_phrase_keeps_math_inside_words():
    assert answer_phrase("Final Answer: The largest $n$ is 34.") == "The largest $n$ is 34"


def test_find_answer_phrase_reports_where_it_is():
    text = "First. The answer is 12. I hope it is correct."
    found = find_answer_phrase(text)
    assert found.text == "12" and text[found.start:found.end].startswith("12")


def test_boxed_spans_cover_the_command():
    text = r"x \boxed{a{b}} y \fbox 7"
    spans = boxed_spans(text)
    assert [s.text for s in spans] == ["a{b}", "7"]
    assert text[spans[0].start:spans[0].end] == r"\boxed{a{b}}"


def test_stated_in_tag_is_the_last_tag_unless_a_box_follows_it():
    assert stated_in_tag("<answer> 7 </answer>") == "7"
    assert stated_in_tag(r"<answer>...</answer> so \boxed{7}") is None
    assert stated_in_tag(r"\boxed{6} <answer>7</answer>") == "7"
    assert stated_in_tag("<answer> </answer>") is None
