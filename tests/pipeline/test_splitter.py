"""The streaming sentence splitter and the speech text cleaner (pure functions, no I/O)."""

from __future__ import annotations

import random

import pytest

from xiaozhi_local.pipeline.splitter import SentenceSplitter, SplitterConfig, clean_for_speech

MARKDOWN_REPLY = (
    "# Pancakes\n"
    "Here is **what you need**, in *short*:\n"
    "- 2 eggs\n"
    "* 1 cup of `flour`\n"
    "1. Mix everything.\n"
    "2. Fry it 😋🍳!\n"
    "```python\n"
    "print('this. is. code!')\n"
    "```\n"
    "| step | time |\n"
    "|------|------|\n"
    "| fry | 3 min |\n"
    "See [the recipe](https://example.com/a.b?x=1) for more.\n"
)

CORPUS = [
    "Sure thing, let me check that for you. Pi is about 3.14, e.g. in circles! Mr. Smith agrees. Done",
    "今天天气很好，适合出去走走。你想去哪里？我们可以去公园！",
    MARKDOWN_REPLY,
    'Well... I count 1...5 and v2.0.1 here. He said "Stop!" Then he left? Yes',
    "好的😊我来帮你查一下，稍等。结果是3.5度……还不错吧",
    "word " * 120,
    "一二三四五六七八九十" * 30,
    "Say [hello, world. Now](http://a.b/c) then go. ~~~\ncode\n~~~\nEnd.",
]


def split_all(text: str, config: SplitterConfig | None = None) -> list[str]:
    splitter = SentenceSplitter(config)
    return splitter.push(text) + splitter.flush()


def split_chunked(text: str, sizes: list[int], config: SplitterConfig | None = None) -> list[str]:
    splitter = SentenceSplitter(config)
    pieces: list[str] = []
    i = 0
    for size in sizes:
        pieces += splitter.push(text[i : i + size])
        i += size
    pieces += splitter.push(text[i:])
    return pieces + splitter.flush()


@pytest.mark.parametrize("text", CORPUS)
def test_streaming_equivalence(text: str) -> None:
    whole = split_all(text)
    assert whole  # every corpus entry says something
    assert split_chunked(text, [1] * len(text)) == whole
    rng = random.Random(len(text))
    for _ in range(20):
        sizes = [rng.randint(0, 7) for _ in range(len(text))]
        assert split_chunked(text, sizes) == whole


def test_first_piece_is_cut_at_a_comma_once_long_enough() -> None:
    pieces = split_all("Sure, that is a great question, and the answer is yes, mostly. Then, more text here, ok.")
    # "Sure," is too short; the first clause mark after 12 characters cuts; later commas never do
    assert pieces == ["Sure, that is a great question,", "and the answer is yes, mostly.", "Then, more text here, ok."]


def test_first_piece_is_cut_early_while_streaming() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("Sure thing, let me think") == []
    assert splitter.push(" about that, because") == ["Sure thing, let me think about that,"]
    assert splitter.push(" it's hard, really.") == []  # not the first piece any more: no clause cut
    assert splitter.push(" Next") == ["because it's hard, really."]
    assert splitter.flush() == ["Next"]


def test_chinese_clause_and_sentence_cuts() -> None:
    assert split_all("你好，今天天气很好，适合出去走走。你想去哪里？我们去公园吧！好") == [
        "你好，今天天气很好，",  # "你好，" has only 2 CJK characters (< 4): no cut yet
        "适合出去走走。",
        "你想去哪里？",
        "我们去公园吧！",
        "好",
    ]
    # CJK sentence ends cut at once, without waiting for the next token
    splitter = SentenceSplitter()
    assert splitter.push("我觉得是这样的。") == ["我觉得是这样的。"]


def test_min_length_is_configurable() -> None:
    config = SplitterConfig(first_min_chars=4, first_min_cjk=2)
    assert split_all("Yes, of course, sure.", config) == ["Yes,", "of course, sure."]
    assert split_all("你好，世界，你好。", config) == ["你好，", "世界，你好。"]


@pytest.mark.parametrize(
    "text",
    [
        "Pi is roughly 3.14159 and e is 2.718 in value.",
        "Use a fruit, e.g. an apple, i.e. something sweet.",
        "Mr. Smith met Dr. Jones and Prof. Lee at 9 a.m. today.",
        "Count from 1...5 or 1…5 slowly.",
        "Version v2.0.1 of example.com works.",
    ],
)
def test_no_cut_at_decimals_abbreviations_or_numeric_ellipses(text: str) -> None:
    config = SplitterConfig(first_min_chars=1000)  # no early clause cut: only sentence ends matter
    assert split_all(text, config) == [text]


def test_sentence_ends_with_quotes_ellipses_and_newlines() -> None:
    text = 'Well... I see. He said "Stop!" Then he left?! Yes\nNo'
    assert split_all(text, SplitterConfig(first_min_chars=1000)) == [
        "Well...", "I see.", 'He said "Stop!"', "Then he left?!", "Yes", "No"]  # fmt: skip


def test_markdown_and_emoji_are_removed_and_code_fences_dropped() -> None:
    pieces = split_all(MARKDOWN_REPLY)
    assert pieces == [
        "Pancakes",
        "Here is what you need, in short:",
        "2 eggs",
        "1 cup of flour",
        "Mix everything.",
        "Fry it!",
        "step, time",
        "fry, 3 min",
        "See the recipe for more.",
    ]
    assert not any("code" in p or "print" in p or "|" in p or "http" in p for p in pieces)


def test_unclosed_code_fence_is_dropped_at_flush() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("Here you go.\n```bash\nrm -rf build. Then") == ["Here you go."]
    assert splitter.push(" more code.\n") == []
    assert splitter.flush() == []


def test_flush_returns_an_unterminated_tail_and_resets() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("The answer is 42. And that is") == ["The answer is 42."]
    assert splitter.flush() == ["And that is"]
    assert splitter.flush() == []
    # after a flush the next reply starts afresh: its first piece may cut at a comma again
    assert splitter.push("Okay then, here we go, again") == ["Okay then, here we go,"]


def test_pending_sentence_end_is_settled_by_flush() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("It costs 3.") == []  # "3." might still become "3.5"
    assert splitter.flush() == ["It costs 3."]


def test_only_punctuation_or_emoji_pieces_are_dropped() -> None:
    assert split_all("😀🎉\n---\n...\n**Hi!** 👋") == ["Hi!"]
    assert split_all("   \n\n") == []


def test_long_text_without_punctuation_is_cut_at_a_word_boundary() -> None:
    words = [f"w{i}" for i in range(100)]
    pieces = split_all(" ".join(words), SplitterConfig(max_chars=50))
    assert len(pieces) > 1 and all(len(p) <= 50 for p in pieces)
    assert " ".join(pieces).split() == words  # no word was broken or lost
    cjk = split_all("字" * 100, SplitterConfig(max_chars=60))  # each CJK character weighs 3
    assert [len(p) for p in cjk] == [20, 20, 20, 20, 20]


def test_long_piece_prefers_a_clause_mark() -> None:
    text = "alpha beta gamma delta, epsilon zeta eta theta iota kappa lambda mu"
    pieces = split_all("Intro. " + text, SplitterConfig(max_chars=40))
    assert pieces[:2] == ["Intro.", "alpha beta gamma delta,"]


def test_no_cut_inside_link_text() -> None:
    assert split_all("Read [part one. And two](http://x.y/z) today. Ok", SplitterConfig(first_min_chars=1000)) == [
        "Read part one. And two today.", "Ok"]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "spoken"),
    [
        ("**Bold** and __strong__ and *it* and _em_ and ~~gone~~", "Bold and strong and it and em and gone"),
        ("Call `get_value()` with snake_case", "Call get_value() with snake_case"),
        ("## Heading\nText", "Heading. Text"),
        ("- [x] done\n- [ ] todo", "done. todo"),
        ("![a cat](cat.png) sits", "a cat sits"),
        ("see https://example.com/page now", "see now"),
        ("line<br/>break", "line break"),
        ("好的😊，我们走吧👍！", "好的，我们走吧！"),
        ("Flags 🇨🇳 and family 👨‍👩‍👧 and ❤️ love", "Flags and family and love"),
        ("> quoted text", "quoted text"),
        ("It is -5 degrees", "It is -5 degrees"),
        ("2*3 is 6, and 2 * 4 is 8", "2*3 is 6, and 2 * 4 is 8"),
        ("Temperature: -5 °C", "Temperature: -5 °C"),
        ("```\nonly code\n```", ""),
        ("🎉🎉", ""),
    ],
)
def test_clean_for_speech(raw: str, spoken: str) -> None:
    assert clean_for_speech(raw) == spoken


def test_clean_keeps_cjk_and_punctuation() -> None:
    text = "你好，世界！こんにちは。안녕하세요? (yes) «ok» 100% – fine"
    assert clean_for_speech(text) == text


def test_eager_mode_cuts_later_pieces_at_commas_too() -> None:
    text = "Sure thing. To boil an egg well, place it in a pot of boiling water, then wait nine minutes."
    calm = SentenceSplitter()
    assert calm.push(text) + calm.flush() == [
        "Sure thing.", "To boil an egg well, place it in a pot of boiling water, then wait nine minutes."]
    eager = SentenceSplitter()
    pieces = eager.push("Sure thing. ")
    eager.eager = True  # the device is about to run out of audio
    pieces += eager.push(text[len("Sure thing. "):]) + eager.flush()
    assert pieces == ["Sure thing.", "To boil an egg well,", "place it in a pot of boiling water,",
                      "then wait nine minutes."]
    assert not eager.eager  # flush resets it for the next reply
