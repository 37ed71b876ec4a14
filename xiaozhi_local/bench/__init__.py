"""``xiaozhi bench``: measure the voice pipeline end to end with simulated devices.

Modules (import them directly):

* :mod:`.utterances` - the fixed questions, spoken by the installed TTS voice into cached WAVs.
* :mod:`.server` - the server under test: a ``xiaozhi serve`` child process or a URL; probes
  (``/health``, ``/turns``) and memory/CPU samplers.
* :mod:`.runner` - the turns, driven through the simulator, ``--concurrency`` devices at once.
* :mod:`.stats` - percentiles, underruns, targets (pure).
* :mod:`.report` - ``report.json`` and ``report.md``; :mod:`.chart` - ``latency.png``.
"""
