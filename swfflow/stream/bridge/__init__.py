"""The stream bridge: ePIC DAQ messages drive one instance of the compiled plan per run.

- :mod:`.core` — the loop, one handler per message type, acks when effects are committed;
- :mod:`.runs` — the open runs, their pending STFs, holds and flows (shared by loop and work);
- :mod:`.acks` — the deliveries waiting on an effect: acked, nacked or dead-lettered there;
- :mod:`.work` — the effects: prepare runs, close at end of run, follow and hold tasks;
- :mod:`.lanes` — the catalog calls: batched attach and STF metadata, in threads of their own;
- :mod:`.config` — :class:`BridgeConfig`;
- :mod:`.sources` — a durable broker subscription (late acks) or a recorded log (``--replay``);
- :mod:`.setup` — the plan template, catalog, executor and store from command-line choices.

State lives in :mod:`swfflow.stream.store`. See ``docs/bridge.md``.
"""

from swfflow.stream.bridge.core import Bridge, BridgeConfig, Rejected

__all__ = ["Bridge", "BridgeConfig", "Rejected"]
