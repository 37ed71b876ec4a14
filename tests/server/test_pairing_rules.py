"""The pure pairing decisions: plain function calls over registry records."""

from __future__ import annotations

import dataclasses

import pytest

from xiaozhi_local.server.pairing_rules import (
    AUTH_FAILED,
    DEVICE_REMOVED,
    DEVICE_REPAIRED,
    DEVICE_REVOKED,
    NOT_PAIRED,
    OtaVerdict,
    activation_admitted,
    new_token,
    normalize_client_id,
    normalize_device_id,
    ota_verdict,
    revoked_reason,
    session_refusal,
    token_hash,
    token_slot,
)
from xiaozhi_local.store.devices import DeviceRecord

TOKEN = "t" * 43
OLD = "o" * 43
PAIRED = DeviceRecord(id="a0:85:e3:f4:49:34", client_id="cid", name=None, state="paired", board=None, firmware=None,
                      first_seen=0, last_seen=0, last_address=None, token_hash=token_hash(TOKEN),
                      prev_token_hash=token_hash(OLD), generation=3, paired_at=0, paired_via="code",
                      revoked_at=None, activation_version=None, serial_number=None)
REVOKED = dataclasses.replace(PAIRED, state="revoked", token_hash=None, prev_token_hash=None)


def test_tokens_are_256_bit_and_only_hashes_match() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) == 43 for t in tokens)  # 32 bytes, base64url
    assert token_hash(TOKEN) != TOKEN and len(token_hash(TOKEN)) == 64
    assert token_slot(PAIRED, TOKEN) == "current"
    assert token_slot(PAIRED, OLD) == "previous"
    assert token_slot(PAIRED, "x" * 43) is None and token_slot(PAIRED, None) is None
    assert token_slot(PAIRED, "") is None
    assert token_slot(REVOKED, TOKEN) is None


@pytest.mark.parametrize(("raw", "key"), [("A0-85-E3-F4-49-34", "a0:85:e3:f4:49:34"),
                                          (" A0:85:E3:F4:49:34 ", "a0:85:e3:f4:49:34"),
                                          ("Web-Test-1", "web-test-1")])
def test_normalize_device_id(raw: str, key: str) -> None:
    assert normalize_device_id(raw) == key


def test_normalize_client_id() -> None:
    assert normalize_client_id(" 6F1C2B9E-3D4A ") == "6f1c2b9e-3d4a" and normalize_client_id(None) == ""


@pytest.mark.parametrize(
    ("record", "client_id", "mode", "verdict"),
    [
        (None, "cid", "paired", OtaVerdict.PAIRING_CODE),
        (PAIRED, "cid", "paired", OtaVerdict.TOKEN),
        (PAIRED, "other", "paired", OtaVerdict.PAIRING_CODE),  # NVS erased, or an impostor with the MAC
        (REVOKED, "cid", "paired", OtaVerdict.PAIRING_CODE),
        (None, "cid", "open", OtaVerdict.RECORD_AND_TOKEN),
        (PAIRED, "other", "open", OtaVerdict.TOKEN),
        (REVOKED, "cid", "open", OtaVerdict.PAIRING_CODE),  # the owner's revocation beats open mode
    ],
)
def test_ota_verdict(record: DeviceRecord | None, client_id: str, mode: str, verdict: OtaVerdict) -> None:
    assert ota_verdict(record, client_id, mode) is verdict  # type: ignore[arg-type]


def test_activation_is_200_exactly_when_a_token_would_be_issued() -> None:
    assert activation_admitted(PAIRED, "cid", "paired")
    assert not activation_admitted(PAIRED, "other", "paired")
    assert not activation_admitted(None, "cid", "paired")
    assert not activation_admitted(REVOKED, "cid", "paired")
    assert activation_admitted(None, "cid", "open")
    assert not activation_admitted(REVOKED, "cid", "open")


def test_session_refusals_carry_the_documented_reasons() -> None:
    assert session_refusal(None, TOKEN, "paired") == NOT_PAIRED == "device not paired, run `xiaozhi device pair`"
    assert session_refusal(REVOKED, TOKEN, "paired") == DEVICE_REVOKED == "device revoked"
    assert session_refusal(PAIRED, None, "paired") == AUTH_FAILED == "authentication failed"
    assert session_refusal(PAIRED, "wrong", "paired") == AUTH_FAILED
    assert session_refusal(PAIRED, TOKEN, "paired") is None
    assert session_refusal(PAIRED, OLD, "paired") is None
    assert session_refusal(None, None, "open") is None
    assert session_refusal(REVOKED, TOKEN, "open") == DEVICE_REVOKED


def test_live_sessions_end_on_revoke_forget_and_repair() -> None:
    assert revoked_reason(3, ("paired", 3), "paired") is None
    assert revoked_reason(3, ("revoked", 3), "paired") == DEVICE_REVOKED
    assert revoked_reason(3, None, "paired") == DEVICE_REMOVED
    assert revoked_reason(3, ("paired", 4), "paired") == DEVICE_REPAIRED
    assert revoked_reason(3, ("paired", 4), "open") is None
    assert revoked_reason(1, ("revoked", 1), "open") == DEVICE_REVOKED
