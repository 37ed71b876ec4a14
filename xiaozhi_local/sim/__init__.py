"""A headless fake firmware: behaves like a stock Xiaozhi device, without the hardware.

Used by ``xiaozhi device simulate`` (try a server without a board), by the socket-level tests
and by benchmarks. Stock firmware is the reference (protocol.md §7 "Recommendation"); no
particular server's quirks are copied. Modules (import them directly):

* :mod:`.identity` - MAC / Client-Id / board, the §1.3 OTA headers and system-info body (pure).
* :mod:`.ota_reply` - reading the OTA reply, transport choice (pure, §1.4).
* :mod:`.ota_client` - check-version and activation like ``CheckNewVersion`` (§1.2-§1.6).
* :mod:`.handshake` - channel config (headers / query auth) and server-hello checks (pure, §2.1-§2.2).
* :mod:`.channel` - the WebSocket: hello, binary v1/v2/v3, MCP answers (§2.1-§2.3, §4).
* :mod:`.device_state` - speaking/listening/idle, gating, the 40-packet queue, per-turn
  timings (pure, §2.4-§2.7).
* :mod:`.microphone` - WAV → 16 kHz 60 ms Opus at real-time pace (§2.4).
* :mod:`.conversation` - the turns of one open channel (§2.7).
* :mod:`.runner` - a whole session (OTA → connect → turns → close), or many devices.
* :mod:`.report` - results as JSON-ready dicts and a Rich summary.
* :mod:`.discover` - find a server by mDNS (``_xiaozhi._tcp.local.``).
"""
