"""The device side of OTA check-version and activation (protocol.md §1.3-§1.6).

:class:`OtaClient` does what ``Application::CheckNewVersion`` does, once per "boot":

1. ``POST <ota_url>`` with the §1.3 headers and system-info body (:mod:`.identity`).
2. No ``activation.code`` and no ``activation.challenge`` in the reply → done (§1.6 item 1).
3. Otherwise show the code, then make up to 10 ``POST <ota_url>/activate`` calls with body
   ``{}`` (``/`` appended to the URL first if missing): **200** → run the whole OTA check
   again; **202** → wait 3 s and retry; anything else → wait 10 s. After 10 attempts the
   firmware re-runs the OTA check and starts over, forever (§1.6 item 3).

Deviations, all on the side of telling the user sooner:

* A failed check (transport error, non-200, not JSON) raises :class:`SimulatorError` at once;
  the firmware would retry after 10 s, 20 s, … (§1.2).
* Without ``wait_for_pairing`` a single activate attempt is made and a non-200 raises
  :class:`PairingRequiredError` naming the code for ``xiaozhi device pair <code>``.
* A reply with ``code`` but no ``challenge`` raises: the firmware's ``Activate()`` would fail
  forever (§1.6 item 4). So does an ``activation`` block still present right after a 200.

The waits use an injected :class:`~xiaozhi_local.audio.clock.Clock` and an
:class:`ActivationPolicy`, so tests run them in milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from xiaozhi_local.audio.clock import Clock, MonotonicClock
from xiaozhi_local.errors import PairingRequiredError, SimulatorError
from xiaozhi_local.sim.identity import DeviceIdentity, ota_headers, system_info
from xiaozhi_local.sim.ota_reply import (
    MIN_URL_LEN,
    ActivationInfo,
    OtaReply,
    WebsocketConfig,
    activate_url,
    parse_ota_reply,
    require_websocket,
    version_tuple,
)

__all__ = [
    "ActivationInfo",
    "ActivationPolicy",
    "OtaClient",
    "OtaOutcome",
    "OtaReply",
    "WebsocketConfig",
    "activate_url",
    "parse_ota_reply",
    "require_websocket",
    "version_tuple",
]


@dataclass(frozen=True, slots=True)
class ActivationPolicy:
    """The firmware's activation timing (§1.6 item 3); shorten it for tests."""

    pending_wait_s: float = 3.0
    """Wait after HTTP 202."""
    retry_wait_s: float = 10.0
    """Wait after any other non-200 status or a transport error."""
    attempts_per_round: int = 10
    max_rounds: int | None = None
    """OTA re-checks to go through while waiting for pairing; None = until paired."""


@dataclass(slots=True)
class OtaOutcome:
    """What the OTA phase did. ``reply`` is the final reply (no activation block)."""

    reply: OtaReply
    url: str
    checks: int = 0
    activate_statuses: list[int] = field(default_factory=list)
    activation_code: str | None = None
    elapsed_s: float = 0.0
    warnings: list[str] = field(default_factory=list)


Log = Callable[[str], None]


class OtaClient:
    """Check-version and activation for one :class:`DeviceIdentity` against ``ota_url``."""

    def __init__(
        self,
        ota_url: str,
        identity: DeviceIdentity,
        *,
        clock: Clock | None = None,
        policy: ActivationPolicy | None = None,
        timeout_s: float = 10.0,
        log: Log | None = None,
    ) -> None:
        if urlsplit(ota_url).scheme not in ("http", "https") or len(ota_url) < MIN_URL_LEN:
            raise SimulatorError(f"{ota_url!r} is not an OTA URL; use e.g. http://<server>:8003/xiaozhi/ota/ (§1.1)")
        self.url = ota_url
        self.identity = identity
        self.clock: Clock = clock or MonotonicClock()
        self.policy = policy or ActivationPolicy()
        self.timeout_s = timeout_s
        self._log = log or (lambda _msg: None)

    async def _post(self, client: httpx.AsyncClient, url: str, body: bytes) -> httpx.Response:
        try:
            return await client.post(url, content=body, headers=ota_headers(self.identity))
        except httpx.TimeoutException:
            raise SimulatorError(f"{url} did not answer within {self.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise SimulatorError(f"cannot reach {url}: {reason}. Is the server running and the URL right?") from None

    async def check_version(self, client: httpx.AsyncClient) -> OtaReply:
        """One check-version POST (§1.3); any failure raises SimulatorError (§1.2)."""
        body = json.dumps(system_info(self.identity), separators=(",", ":")).encode()
        response = await self._post(client, self.url, body)
        if response.status_code != 200:
            snippet = response.text[:200].strip()
            raise SimulatorError(f"OTA check at {self.url} answered HTTP {response.status_code}: {snippet!r} (§1.2)")
        return parse_ota_reply(response.content, url=self.url)

    async def activate(self, client: httpx.AsyncClient) -> int:
        """One ``POST …/activate`` with body ``{}`` (§1.6); returns the HTTP status (0: no answer)."""
        try:
            response = await self._post(client, activate_url(self.url), b"{}")
        except SimulatorError as exc:
            self._log(f"activate failed: {exc}")
            return 0
        return response.status_code

    async def run(self, *, wait_for_pairing: bool = False) -> OtaOutcome:
        """The whole OTA phase of a boot (see the module docstring)."""
        start = self.clock.now()
        shown: set[str] = set()
        outcome: OtaOutcome | None = None
        rounds = 0
        just_activated = False
        async with httpx.AsyncClient(timeout=self.timeout_s, trust_env=False) as client:
            for name in ("Accept", "Accept-Encoding"):  # the firmware's HTTP client sends neither
                del client.headers[name]
            while True:
                reply = await self.check_version(client)
                if outcome is None:
                    outcome = OtaOutcome(reply=reply, url=self.url)
                outcome.reply = reply
                outcome.checks += 1
                act = reply.activation
                if act is None:
                    break
                if just_activated:
                    raise SimulatorError(
                        "the server answered 200 to /activate but its next OTA reply still carries an "
                        "'activation' block; a stock device would loop forever (§1.6, §8 item 3)"
                    )
                if act.code and act.code not in shown:
                    shown.add(act.code)
                    outcome.activation_code = act.code
                    self._log(_pairing_message(self.identity, act, waiting=wait_for_pairing))
                if not act.challenge:
                    raise SimulatorError(
                        f"the OTA reply carries activation code {act.code!r} but no 'challenge': a stock "
                        "device's Activate() fails forever without it (§1.6 item 4)"
                    )
                rounds += 1
                just_activated = await self._activation_round(client, outcome, act, wait_for_pairing)
                if not just_activated and self.policy.max_rounds is not None and rounds >= self.policy.max_rounds:
                    raise PairingRequiredError(
                        f"device {self.identity.mac} is still not paired after {rounds} activation round(s); "
                        f"run `xiaozhi device pair {act.code or '?'}` on the server",
                        code=act.code,
                    )
        assert outcome is not None
        self._note_firmware(outcome)
        outcome.elapsed_s = self.clock.now() - start
        return outcome

    async def _activation_round(
        self, client: httpx.AsyncClient, outcome: OtaOutcome, act: ActivationInfo, wait_for_pairing: bool
    ) -> bool:
        """Up to ``attempts_per_round`` activate calls; True when one answered 200."""
        attempts = self.policy.attempts_per_round if wait_for_pairing else 1
        for i in range(attempts):
            status = await self.activate(client)
            outcome.activate_statuses.append(status)
            if status == 200:
                self._log("activated: the server accepted the device; checking OTA again")
                return True
            if not wait_for_pairing:
                if status == 0:
                    raise SimulatorError(f"cannot reach {activate_url(self.url)} to activate the device (§1.6)")
                raise PairingRequiredError(_pairing_message(self.identity, act, waiting=False), code=act.code)
            wait = self.policy.pending_wait_s if status == 202 else self.policy.retry_wait_s
            self._log(f"activation {i + 1}/{attempts}: HTTP {status}, waiting {wait:g} s")
            await self.clock.sleep(wait)
        return False

    def _note_firmware(self, outcome: OtaOutcome) -> None:
        reply = outcome.reply
        offered = reply.firmware_version
        if offered and reply.firmware_url is not None:
            newer = version_tuple(offered) > version_tuple(self.identity.firmware_version)
            if newer or reply.firmware_force:
                outcome.warnings.append(
                    f"the server offers firmware {offered} (url {reply.firmware_url!r}); a stock device "
                    f"running {self.identity.firmware_version} would download it and reboot (§1.4)"
                )


def _pairing_message(identity: DeviceIdentity, act: ActivationInfo, *, waiting: bool) -> str:
    code = act.code or "?"
    shown = f" (device shows: {act.message!r})" if act.message and act.message != act.code else ""
    head = f"device {identity.mac} is not paired: activation code {code}{shown}. Run `xiaozhi device pair {code}`"
    if waiting:
        return f"{head} on the server; polling /activate like a real device until it is paired (Ctrl-C to stop)."
    return f"{head} on the server, then run the simulator again (or pass --wait-for-pairing to keep polling)."
