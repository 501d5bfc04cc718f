"""The stream bridge: ePIC DAQ messages drive one instance of the compiled plan per run.

- :mod:`.core` — the loop, one handler per message type, acks when effects are committed;
- :mod:`.work` — the effects: prepare runs, batched attach, close at end of run, follow tasks;
- :mod:`.sources` — a durable broker subscription (late acks) or a recorded log (``--replay``);
- :mod:`.setup` — the plan template, catalog, executor and store from command-line choices.

State lives in :mod:`swfflow.stream.store`. See ``docs/bridge.md``.
"""

from swfflow.stream.bridge.core import Bridge, BridgeConfig, Rejected

__all__ = ["Bridge", "BridgeConfig", "Rejected"]
