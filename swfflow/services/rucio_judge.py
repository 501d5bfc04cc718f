"""Rucio's judge-evaluator daemon for the local service, run by the Rucio server's venv.

Standalone (the server venv has no swfflow): ``<venv>/bin/python rucio_judge.py``.

Why not ``rucio-judge-evaluator`` itself: when the evaluator finds a rule row locked by another
transaction (PostgreSQL "lock not available" — the bridge registering a site copy updates the
same rule's locks at that moment), it pauses that dataset for ``randint(60, 600)`` seconds. On a
production Rucio that back-off spares a loaded database; on this one-machine service it leaves
a satisfied rule without its locks for up to ten minutes. Here the pause is 2-5 s; everything
else is Rucio's own daemon, logged at WARNING (a "Locks detected" line marks each pause).
"""

import random
import signal

from rucio.daemons.judge import evaluator

PAUSE_S = (2, 5)


def short_pause(_low: int, _high: int) -> int:
    return random.randint(*PAUSE_S)  # noqa: S311 - a back-off, not a secret


if __name__ == "__main__":
    evaluator.randint = short_pause  # the only name the evaluator draws its pause from
    signal.signal(signal.SIGTERM, evaluator.stop)
    try:
        evaluator.run(threads=1, sleep_time=1)
    except KeyboardInterrupt:
        evaluator.stop()
