"""PanDA's adder, the daemon that finishes jobs: run by the PanDA venv's Python (never
imports swfflow), as ``python swf_adder.py``.

A pilot's final ``update_job`` leaves the job in ``holding`` with a job output report; the
adder (``pandaserver/daemons/scripts/add_main.py``) reads the reports, lets the VO's adder
plugin register the outputs (the dummy plugin: swfflow's pilot registered them in Rucio
already) and moves the job to ``finished``/``failed``, which JEDI's bookkeeping reads.
Production runs it under PanDA's daemon master every 4 minutes with a grace period; here it
loops with no grace period and one worker thread (the machine is small).

Every ``WATCH_EVERY_S`` the same process also runs PanDA's watcher for lost heartbeats
(``swf_watcher.py``), which fails the jobs of dead pilots so that JEDI retries them."""

import sys
import time

GRACE_S, THREADS, PAUSE_S = "0", "1", 1.0
WATCH_EVERY_S = 10.0


def main() -> None:
    from pandaserver.daemons.scripts import add_main
    from swf_watcher import LostHeartbeats

    watcher, watched = None, 0.0
    while True:
        try:
            add_main.main(argv=["add_main", GRACE_S, THREADS])
        except Exception as exc:  # noqa: BLE001 - one bad round must not end the daemon
            sys.stderr.write(f"adder round failed: {exc}\n")
        if time.monotonic() - watched > WATCH_EVERY_S:
            watched = time.monotonic()
            try:
                watcher = watcher or LostHeartbeats()
                watcher.round()
            except Exception as exc:  # noqa: BLE001 - as above
                sys.stderr.write(f"watcher round failed: {exc}\n")
        time.sleep(PAUSE_S)


if __name__ == "__main__":
    main()
