"""Wake words, goodbyes and built-in intents: whole-utterance text matching (pure)."""

from __future__ import annotations

import pytest

from xiaozhi_local.pipeline.intents import Intent, is_goodbye, is_wake_word, match_builtin, normalize

WAKE_WORDS = ["你好小智", "小智", "hi esp", "hey xiaozhi", "hi xiaozhi", "xiaozhi"]
GOODBYES = ["bye", "goodbye", "bye bye", "see you", "再见", "拜拜"]


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("Hi, XiaoZhi!!", "hi xiaozhi"),
        ("你好，小智！", "你好 小智"),
        ("  What's   up?\n", "whats up"),
        ("Ｈｅｌｌｏ　ｗｏｒｌｄ", "hello world"),  # full-width letters and space (NFKC)
        ("Great 👍🏽 job ❤️", "great job"),
        ("「好的」……再见。", "好的 再见"),
        ("Straße", "strasse"),
        ("", ""),
    ],
)
def test_normalize(raw: str, normal: str) -> None:
    assert normalize(raw) == normal


@pytest.mark.parametrize(
    "text",
    ["你好小智", "你好，小智", "小智", "Hi Xiaozhi!", "hey xiaozhi", "XIAOZHI.", "hello xiaozhi", "小智你好",
     "嗨，小智", "hi esp", "ok xiaozhi", "小智小智", "Hi, ESP!"],
)  # fmt: skip
def test_wake_words(text: str) -> None:
    assert is_wake_word(text, WAKE_WORDS)


@pytest.mark.parametrize(
    "text",
    ["hi", "你好", "", "xiaozhi what is the weather", "小智，今天天气怎么样", "hi xiaozhi how are you",
     "I like xiaozhi"],
)  # fmt: skip
def test_not_wake_words(text: str) -> None:
    assert not is_wake_word(text, WAKE_WORDS)


def test_wake_word_list_is_respected() -> None:
    assert not is_wake_word("xiaozhi", ["alexa"])
    assert is_wake_word("hey alexa", ["alexa"])
    assert not is_wake_word("alexa", [])


@pytest.mark.parametrize(
    "text",
    ["bye", "Bye!", "goodbye.", "Bye-bye!", "ok bye then", "Okay, thanks, bye!", "thank you, goodbye",
     "see you later", "bye for now", "goodbye xiaozhi", "再见", "好的，再见！", "那再见了", "拜拜啦", "谢谢，拜拜",
     "再见小智"],
)  # fmt: skip
def test_goodbyes(text: str) -> None:
    assert is_goodbye(text, GOODBYES)


@pytest.mark.parametrize(
    "text",
    ["how do I say bye in French", "thanks", "ok then", "byebye", "bye the way, what time is it",
     "say goodbye to my mom", "再见是什么意思", "好的", "", "goodbyes are hard"],
)  # fmt: skip
def test_not_goodbyes(text: str) -> None:
    assert not is_goodbye(text, GOODBYES)


def test_goodbye_list_is_respected() -> None:
    assert not is_goodbye("bye", [])
    assert is_goodbye("ok ciao then", ["ciao"])
    assert not is_goodbye("bye", ["ciao"])


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("remember my voice, I am Sam", "Sam"),
        ("Remember my voice, my name is Sam", "Sam"),
        ("please remember my voice, I'm Sam Lee", "Sam Lee"),
        ("Can you learn my voice? This is Anna, thanks", "Anna"),
        ("I'm Sam, remember my voice.", "Sam"),
        ("My name is Sam. Please remember my voice", "Sam"),
        ("记住我的声音，我是小明", "小明"),
        ("请记住我的声音，我叫小红。", "小红"),
        ("小智，记一下我的声纹，我的名字是王小明吧", "王小明"),
        ("我是小明，记住我的声音", "小明"),
        ("记住我的声音，我是Sam", "Sam"),
    ],
)
def test_enroll_voice(text: str, name: str) -> None:
    assert match_builtin(text) == Intent("enroll_voice", name)


@pytest.mark.parametrize(
    "text",
    [
        "forget what you know about me",
        "Forget everything you know about me.",
        "please forget about me",
        "forget me",
        "delete my data, please",
        "忘记关于我的一切",
        "请忘掉我吧",
        "删除我的数据",
        "小智，忘记你对我的记忆",
    ],
)
def test_forget_me(text: str) -> None:
    assert match_builtin(text) == Intent("forget_me", "")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "remember my voice",  # no name
        "can you remember my voice when I sing",
        "remember my voice, I'm going to sing",
        "I am Sam",
        "what is my name",
        "do you remember my voice, I am curious",  # a question, not the request
        "forget it",
        "forget what I said about the weather",
        "how do I make you forget about me",
        "记住我的声音",
        "忘了我刚才说的话",
        "我是小明",
        "tell me a joke",
    ],
)
def test_not_builtin(text: str) -> None:
    assert match_builtin(text) is None
