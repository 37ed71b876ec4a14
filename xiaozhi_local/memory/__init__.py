"""What the assistant remembers, and whose voice it hears (issue 6).

Modules (import them directly):

* :mod:`.voiceprints` - enroll a voice under a name; identify the speaker of an utterance.
* :mod:`.distill` - the local LLM turns what a person said into short facts; junk is dropped.
* :mod:`.facts` - pure: comparing facts, merging new ones into the stored ones (replace, add).
* :mod:`.context` - pure: the system-prompt text with the speaker's name and facts.
* :mod:`.audio` - the opt-in debugging store of utterance audio, with its retention period.
* :mod:`.hooks` - `MemoryHooks`, the assistant's `TurnHooks`: all of the above around each turn.

The tables are in :mod:`xiaozhi_local.store.memory`.
"""
