"""PanDA's pilot API (``/api/v1/pilot/…``), the calls the real pilot makes: ``acquire_jobs``
and ``update_job``. JSON over HTTP(S); transient failures are retried a bounded number of
times, an answer with ``success: false`` is a :class:`ServiceError` naming the call."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import requests
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from swfflow.errors import ServiceError

_TRANSIENT = (requests.ConnectionError, requests.Timeout)


@dataclass
class PilotAPI:
    """``base`` is the server's root (``http://127.0.0.1:25080``) or its ``/server/panda`` URL
    (what panda-client's ``PANDA_URL_SSL`` holds)."""

    base: str
    timeout_s: float = 60.0
    attempts: int = 4

    def __post_init__(self) -> None:
        self.base = self.base.rstrip("/").removesuffix("/server/panda")
        self._session = requests.Session()

    def _post(self, call: str, *, empty_ok: str | None = None, **params: Any) -> Any:
        url = f"{self.base}/api/v1/pilot/{call}"
        body = {k: v for k, v in params.items() if v is not None}
        try:
            for attempt in Retrying(stop=stop_after_attempt(self.attempts), reraise=True,
                                    wait=wait_exponential(multiplier=0.5, max=5),
                                    retry=retry_if_exception_type(_TRANSIENT)):
                with attempt:
                    reply = self._session.post(url, json=body, timeout=self.timeout_s,
                                               headers={"Accept": "application/json"})
        except _TRANSIENT as exc:
            raise ServiceError(f"PanDA's pilot API did not answer {call} ({exc})", where=url,
                               hint="is the PanDA server up? (swfflow services status)") from None
        try:
            answer = reply.json()
        except ValueError:
            raise ServiceError(f"{call} answered HTTP {reply.status_code} without JSON: "
                               f"{reply.text[:200]!r}", where=url) from None
        if not answer.get("success"):
            if empty_ok and empty_ok in str(answer.get("message")):
                return None
            raise ServiceError(f"{call} refused: {answer.get('message')}", where=url)
        return answer.get("data")

    def acquire_jobs(self, queue: str, *, label: str, node: str, n_jobs: int = 1,
                     task_id: int | None = None) -> list[dict]:
        """Up to ``n_jobs`` activated jobs of ``queue`` (now ``starting``, owned by us); only
        of JEDI task ``task_id`` if given."""
        # an empty queue is an unsuccessful answer with this message
        data = self._post("acquire_jobs", empty_ok="No jobs", site_name=queue, prod_source_label=label, node=node,
                          n_jobs=n_jobs, task_id=task_id, timeout=int(self.timeout_s))
        if isinstance(data, dict) and "jobs" in data:
            return list(data["jobs"])
        return [data] if isinstance(data, dict) and data.get("PandaID") else []

    def update_job(self, job_id: int, state: str, **fields: Any) -> dict:
        """Report ``state`` (starting, running, finished, failed) and what the job did."""
        if isinstance(fields.get("job_output_report"), dict):
            fields["job_output_report"] = json.dumps(fields["job_output_report"])
        data = self._post("update_job", job_id=job_id, job_status=state, **fields)
        if isinstance(data, dict) and data.get("command") == "tobekilled":
            raise JobKilled(job_id)
        return data or {}


class JobKilled(Exception):
    """PanDA answered an update with the command to kill the job."""
