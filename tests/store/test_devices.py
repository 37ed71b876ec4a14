"""The device registry over a real SQLite file, with an injected clock."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from xiaozhi_local.store.devices import DeviceInfo, DeviceRegistry, PendingLimitError, RegistryError

MAC = "a0:85:e3:f4:49:34"
CID = "6f1c2b9e-3d4a-4c5b-9e8f-0a1b2c3d4e5f"
INFO = DeviceInfo(client_id=CID, board="bread-compact-wifi", firmware="2.0.3", activation_version="1")


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(tmp_path: Path, clock: FakeClock) -> DeviceRegistry:
    return DeviceRegistry.open(tmp_path / "xiaozhi.db", clock)


def ask(registry: DeviceRegistry, device_id: str = MAC, info: DeviceInfo = INFO, address: str = "192.168.1.23",
        max_pending: int = 20, max_per_address: int = 4, ttl_s: float = 600):
    return registry.open_request(device_id, info, address, ttl_s=ttl_s, max_pending=max_pending,
                                 max_per_address=max_per_address)


def test_request_is_reused_until_it_expires_then_reissued(registry: DeviceRegistry, clock: FakeClock) -> None:
    first, new = ask(registry)
    assert new and len(first.code) == 6 and first.code.isdigit() and len(first.challenge) == 32
    assert first.expires_at == clock.t + 600
    clock.t += 599
    again, new = ask(registry, address="192.168.1.24")
    assert not new and again.code == first.code and again.address == "192.168.1.24"
    clock.t += 2  # expired
    assert registry.requests() == []
    third, new = ask(registry)
    assert new and third.challenge != first.challenge


def test_each_client_id_gets_its_own_code(registry: DeviceRegistry) -> None:
    """A second identity claiming the same MAC never shares the real device's code."""
    real, _ = ask(registry)
    impostor, new = ask(registry, info=DeviceInfo(client_id="other"), address="192.168.1.66")
    assert new and impostor.code != real.code
    record = registry.approve(real.code)
    assert record.client_id == CID and record.state == "paired" and record.generation == 1
    assert registry.requests() == []  # every request for that MAC is gone


def test_codes_are_unique_among_pending(tmp_path: Path, clock: FakeClock) -> None:
    codes = itertools.chain(["111111"] * 3, ["222222"], ["111111", "333333"])
    registry = DeviceRegistry(DeviceRegistry.open(tmp_path / "x.db", clock).db, clock, new_code=lambda: next(codes))
    a, _ = ask(registry, "aa:00:00:00:00:01")
    b, _ = ask(registry, "aa:00:00:00:00:02")
    c, _ = ask(registry, "aa:00:00:00:00:03")
    assert [a.code, b.code, c.code] == ["111111", "222222", "333333"]


def test_pending_limits_total_and_per_address(registry: DeviceRegistry, clock: FakeClock) -> None:
    for i in range(3):
        ask(registry, f"aa:00:00:00:00:0{i}", address="10.0.0.9", max_per_address=3)
    with pytest.raises(PendingLimitError, match=r"from 10\.0\.0\.9"):
        ask(registry, "aa:00:00:00:00:09", address="10.0.0.9", max_per_address=3)
    for i in range(2):
        ask(registry, f"bb:00:00:00:00:0{i}", address=f"10.0.1.{i}", max_pending=5)
    with pytest.raises(PendingLimitError, match="max_pending"):
        ask(registry, "cc:00:00:00:00:00", address="10.0.2.1", max_pending=5)
    # a device that already waits keeps its code even when the registry is full
    _, new = ask(registry, "aa:00:00:00:00:00", address="10.0.0.9", max_pending=5)
    assert not new
    clock.t += 601  # everything expired: room again
    _, new = ask(registry, "cc:00:00:00:00:00", address="10.0.2.1", max_pending=5)
    assert new and registry.pending_count() == 1


def test_approve_unknown_or_expired_code(registry: DeviceRegistry, clock: FakeClock) -> None:
    with pytest.raises(RegistryError, match="no device is waiting with code 123456"):
        registry.approve("123456")
    req, _ = ask(registry)
    clock.t += 601
    with pytest.raises(RegistryError, match="expire"):
        registry.approve(req.code)
    assert registry.get(MAC) is None


def test_tokens_rotate_and_repairing_resets_them(registry: DeviceRegistry) -> None:
    req, _ = ask(registry)
    registry.approve(req.code)
    assert registry.issue_token(MAC, "h1", INFO, "192.168.1.23")
    assert registry.issue_token(MAC, "h2", INFO, "192.168.1.23")
    record = registry.get(MAC)
    assert record is not None and (record.token_hash, record.prev_token_hash) == ("h2", "h1")
    registry.note_connect(MAC, "192.168.1.23", retire_previous_token=True)
    record = registry.get(MAC)
    assert record is not None and (record.token_hash, record.prev_token_hash) == ("h2", None)
    # re-pairing (e.g. after an NVS erase gave the device a new Client-Id)
    req, _ = ask(registry, info=DeviceInfo(client_id="new-uuid"))
    record = registry.approve(req.code)
    assert (record.client_id, record.token_hash, record.generation) == ("new-uuid", None, 2)
    assert record.board == "bread-compact-wifi"  # kept from before
    # a check-in of the old identity that raced the re-pairing gets nothing
    assert not registry.issue_token(MAC, "h3", INFO, "x")
    assert registry.issue_token(MAC, "h4", DeviceInfo(client_id="new-uuid"), "x")
    assert registry.issue_token(MAC, "h5", INFO, "x", require_client_id=False)  # open mode adopts it
    assert registry.get(MAC).client_id == CID  # type: ignore[union-attr]


def test_revoke_rename_forget(registry: DeviceRegistry, clock: FakeClock) -> None:
    req, _ = ask(registry)
    registry.approve(req.code)
    registry.issue_token(MAC, "h1", INFO, "x")
    assert registry.rename(MAC, "Kitchen").name == "Kitchen"
    assert [r.id for r in registry.find("kitchen")] == [MAC]
    clock.t += 5
    record = registry.revoke(MAC)
    assert record.state == "revoked" and record.revoked_at == clock.t and record.token_hash is None
    assert not registry.issue_token(MAC, "h2", INFO, "x")  # a revoked device gets no token
    assert registry.states([MAC, "nobody"]) == {MAC: ("revoked", 1)}
    assert registry.forget(MAC) == (True, 0)
    assert registry.get(MAC) is None and registry.forget(MAC) == (False, 0)
    with pytest.raises(RegistryError):
        registry.revoke(MAC)
    with pytest.raises(RegistryError):
        registry.rename(MAC, "x")


def test_open_mode_records_but_keeps_revoked(registry: DeviceRegistry) -> None:
    record = registry.admit_open(MAC, INFO, "10.0.0.5")
    assert (record.state, record.paired_via, record.board) == ("paired", "open", "bread-compact-wifi")
    registry.revoke(MAC)
    assert registry.admit_open(MAC, INFO, "10.0.0.5").state == "revoked"


def test_v2_hmac_is_recorded_not_trusted(registry: DeviceRegistry) -> None:
    req, _ = ask(registry)
    registry.record_activation(MAC, CID, serial_number="SN1", hmac="ab" * 32, challenge=req.challenge)
    registry.record_activation(MAC, "someone-else", serial_number="SN2", hmac="cd" * 32, challenge="x")
    stored = registry.request_for(MAC, CID)
    assert stored is not None
    assert (stored.hmac, stored.hmac_challenge_ok, stored.serial_number) == ("ab" * 32, True, "SN1")
    assert registry.get(MAC) is None  # recorded; pairing still needs the owner
    record = registry.approve(req.code)
    assert record.serial_number == "SN1"


def test_two_connections_see_each_others_commits(tmp_path: Path, clock: FakeClock) -> None:
    """The CLI and the server are separate processes on one WAL database."""
    server = DeviceRegistry.open(tmp_path / "x.db", clock)
    cli = DeviceRegistry.open(tmp_path / "x.db", clock)
    req, _ = ask(server)
    assert [r.code for r in cli.requests()] == [req.code]
    cli.approve(req.code)
    record = server.get(MAC)
    assert record is not None and record.state == "paired"
    assert "token_hash" not in record.to_dict() and record.to_dict()["has_token"] is False
