"""Answer extraction shared by every verifier."""
from verifiers.extract import (
    all_boxed, answer_phrase, answer_tag, final_line, last_boxed, last_code_block, strip_thinking,
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


def test_no_code_block_gives_none():
    assert last_code_block("no code here") is None
