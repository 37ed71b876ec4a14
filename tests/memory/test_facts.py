"""Comparing and merging facts (pure)."""

from __future__ import annotations

import pytest

from xiaozhi_local.memory.facts import grounded, key_words, normalize_fact, plan_merge, same_topic
from xiaozhi_local.store.memory import Fact, FactChange


def fact(id_: int, text: str) -> Fact:
    return Fact(id_, "speaker", "Sam", text, None, float(id_), float(id_))


def test_normalize() -> None:
    assert normalize_fact("  the user’s dog is called Max ") == "The user's dog is called Max."
    assert normalize_fact('"The user likes tea,"') == "The user likes tea."
    assert normalize_fact("") == ""
    assert normalize_fact("The user's daughter is called小红") == "The user's daughter is called 小红."


def test_key_words_drop_the_subject_and_fillers_and_stem() -> None:
    assert key_words("The user has two daughters.") == {"two", "daughter"}
    assert key_words("The user no longer likes green tea.") == key_words("The user likes green tea.")


@pytest.mark.parametrize(("old", "new"), [
    ("The user likes green tea.", "The user likes green tea."),
    ("The user likes green tea.", "The user no longer likes green tea."),  # a correction
    ("The user lives in Paris.", "The user moved to Berlin last month."),  # one place to live
    ("The user's name is Sam.", "The user's name is Samuel."),
    ("The user works as a nurse.", "The user works at the city hospital."),
    ("The user is 41 years old.", "The user is 42 years old."),
    ("The user has a dog called Max.", "The user has a dog called Max who is three."),  # more detail
    ("The user loves green tea, especially in the morning.", "The user doesn't drink green tea any more."),
])
def test_the_same_topic_is_recognised(old: str, new: str) -> None:
    assert same_topic(old, new) and same_topic(new, old)


@pytest.mark.parametrize(("a", "b"), [
    ("The user likes green tea.", "The user likes coffee."),
    ("The user has a dog called Max.", "The user has two daughters."),
    ("The user's sister lives in Rome.", "The user lives in Paris."),  # the sister's home is not theirs
    ("The user works as a nurse.", "The user's wife works as a teacher."),
    ("The user likes green tea.", "The user doesn't like coffee."),
])
def test_different_topics_stay_apart(a: str, b: str) -> None:
    assert not same_topic(a, b)


def test_plan_merge_replaces_what_a_fact_updates_and_adds_the_rest() -> None:
    existing = [fact(2, "The user lives in Paris."), fact(1, "The user likes green tea.")]
    plan = plan_merge(["The user moved to Berlin.", "The user has a cat.", "The user likes green tea."], existing)
    assert plan == [FactChange("The user moved to Berlin.", 2), FactChange("The user has a cat."),
                    FactChange("The user likes green tea.", 1)]


def test_plan_merge_keeps_the_later_of_two_new_facts_about_one_thing() -> None:
    plan = plan_merge(["The user lives in Paris.", "The user lives in Berlin."], [fact(1, "The user is tall.")])
    assert plan == [FactChange("The user lives in Berlin.")]


def test_grounded_counts_key_words_the_person_said() -> None:
    assert grounded("The user's dog is called Max.", ["My dog is called Max."]) == (2, 2)
    assert grounded("The user has a dog who lives in Rome.", ["My dog is called Max."]) == (1, 3)
    assert grounded("The user has two daughters.", ["I have 2 daughters"]) == (1, 2)
    assert grounded("用户有一只狗叫小白", ["我的狗叫小白"]) == (4, 7)
