"""Which container engine actually answers here, and what a DockerRequirement then means.

A client binary is not enough (the docker CLI exists on machines without a daemon), so each
engine is asked a question only a working installation answers. The answer is cached per process.
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from swfflow.errors import UnsupportedFeature

log = logging.getLogger("swfflow.containers")

# engine → the probe command that succeeds only when the engine can run containers
_PROBES: dict[str, tuple[str, ...]] = {
    "docker": ("docker", "info", "--format", "{{.ServerVersion}}"),
    "podman": ("podman", "info", "--format", "{{.Version.Version}}"),
    "apptainer": ("apptainer", "--version"),
    "singularity": ("singularity", "--version"),
}


_WARNED: set[tuple[str, str]] = set()


def warn_once(image: str, reason: str, where: str) -> None:
    """Say once per image and process that a tool runs on the host instead of its container."""
    if (image, reason) not in _WARNED:  # once per image, not once per job
        _WARNED.add((image, reason))
        log.warning("%s: running without container %s: %s", where, image, reason)


@functools.lru_cache(maxsize=1)
def available_engine() -> str | None:
    """The first engine that answers, or None."""
    for engine, probe in _PROBES.items():
        if shutil.which(probe[0]) is None:
            continue
        try:
            done = subprocess.run(probe, capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return engine
    return None


@dataclass(frozen=True)
class ContainerPolicy:
    """``forbid``: ``--no-container``; otherwise use the engine that answers, if any.
    ``on_fallback(image, reason, where)`` hears of a tool run on the host: a warning here, or,
    in a pool worker (whose "once" would be once per worker, printed by logging's last-resort
    handler), a note the job's result carries to the parent, which warns once."""

    forbid: bool = False
    on_fallback: Callable[[str, str, str], None] = warn_once

    def decide(self, image: str | None, required: bool, where: str) -> str | None:
        """The engine to run ``image`` with, or None to run on the host. Raises when a
        *required* container cannot run."""
        if image is None:
            return None
        engine = None if self.forbid else available_engine()
        if engine is not None:
            return engine
        reason = "--no-container was given" if self.forbid else \
            "no container engine answers (docker, podman, apptainer, singularity)"
        if required:
            raise UnsupportedFeature(
                f"DockerRequirement {image!r} is a requirement but {reason}",
                where=where,
                hint="start a container engine, or declare the image under hints: "
                     "so the tool may run on the host")
        self.on_fallback(image, reason, where)
        return None
