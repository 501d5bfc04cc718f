"""The job's sandbox, as runGen fetches it: the job parameters start with runGen's options
``--sourceURL URL`` and ``-a NAME`` (what ``swfflow submit`` and the bridge add, prun's way;
docs/panda.md, "Sandbox"); the pilot downloads ``URL/cache/NAME`` from the PanDA server's cache,
unpacks it into the job's folder and runs the rest of the parameters there."""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

# runGen's option → the Sandbox field it sets
OPTIONS = {"--sourceURL": "source_url", "-a": "archive"}
_TRANSIENT = (requests.ConnectionError, requests.Timeout)


class SandboxError(Exception):
    """The sandbox could not be fetched or unpacked (a stage-in failure of the job)."""


@dataclass(frozen=True)
class Sandbox:
    source_url: str | None = None
    archive: str | None = None

    @property
    def url(self) -> str | None:
        if not self.archive:
            return None
        if not self.source_url:
            raise SandboxError(f"the job names sandbox {self.archive!r} but no --sourceURL")
        return f"{self.source_url.rstrip('/')}/cache/{self.archive}"


def split_options(args: list[str]) -> tuple[Sandbox, list[str]]:
    """runGen's sandbox options at the start of ``args`` (in any order), and the rest: the
    job's command line."""
    found: dict[str, str] = {}
    rest = list(args)
    while len(rest) >= 2 and rest[0] in OPTIONS:
        found[OPTIONS[rest[0]]] = rest[1]
        del rest[:2]
    return Sandbox(**found), rest


def fetch(sandbox: Sandbox, workdir: Path, *, timeout_s: float = 120.0,
          attempts: int = 4) -> list[str]:
    """Download and unpack ``sandbox`` into ``workdir``; the member names (none: nothing to
    do). Transient network errors are retried a bounded number of times."""
    url = sandbox.url
    if url is None:
        return []
    if "/" in sandbox.archive or sandbox.archive.startswith("."):
        raise SandboxError(f"sandbox name {sandbox.archive!r} is not a file name")
    target = workdir / sandbox.archive
    try:
        for attempt in Retrying(stop=stop_after_attempt(attempts), reraise=True,
                                wait=wait_exponential(multiplier=0.5, max=5),
                                retry=retry_if_exception_type(_TRANSIENT)):
            with attempt, requests.get(url, stream=True, timeout=timeout_s) as reply:
                if reply.status_code != 200:
                    raise SandboxError(f"GET {url} answered HTTP {reply.status_code}")
                with open(target, "wb") as out:
                    for chunk in reply.iter_content(1 << 20):
                        out.write(chunk)
    except _TRANSIENT as exc:
        raise SandboxError(f"cannot download the sandbox {url}: {exc}") from None
    try:
        with tarfile.open(target) as tar:
            # the "data" filter refuses absolute paths, links out of the folder, devices
            tar.extractall(workdir, filter="data")
            names = tar.getnames()
    except (tarfile.TarError, OSError) as exc:
        raise SandboxError(f"cannot unpack the sandbox {sandbox.archive}: {exc}") from None
    finally:
        target.unlink(missing_ok=True)
    return names
