"""The profile: everything site-, VO- and naming-specific, read from a YAML file.

Nothing in the planner hard-codes a site, VO, scope, label or nickname: it reads them here.
The embedded default is ``swfflow/data/default-profile.yaml``; a user's file is merged over it
key by key, so a profile only needs the keys it changes.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer

from swfflow.errors import ConfigError

PROFILE_ENV = "SWFFLOW_PROFILE"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scopes(_Strict):
    stream: str
    output: str


class Names(_Strict):
    stream_dataset: str
    task: str
    output_dataset: str
    log_dataset: str


class Defaults(_Strict):
    cores: int = Field(ge=1)
    mem_mb: int = Field(ge=1)
    disk_mb: int = Field(ge=0)
    walltime_s: int = Field(ge=1)
    retries: int = Field(ge=0)
    max_files_per_job: int = Field(ge=1)
    gather_files_per_job: int = Field(ge=1)


class Rule(_Strict):
    rse_expression: str
    copies: int = Field(default=1, ge=1)
    lifetime_s: int | None = None


class RucioSettings(_Strict):
    stream_rse: str
    stream_rules: list[Rule]
    output_rules: list[Rule]


class BridgeSettings(_Strict):
    # pause_run pauses the run's submitted tasks and resume_run resumes them (off: the DAQ
    # state is only recorded). Off by default: PanDA accepts pause/resume from production
    # roles only, and a standby pause is usually short.
    pause_tasks_on_pause: bool = False
    # the butterfly (issue 15): the E1 RSEs every STF is copied to, and those marked down
    # (they get no copies until they are back, then catch up). Empty: no copies.
    sites: list[str] = []
    sites_down: list[str] = []
    # processing: each run's tasks go to the PanDA queue of one site (site_queues: RSE →
    # queue), chosen per run by site_policy among the sites not down (weights: site_weights)
    site_queues: dict[str, str] = {}
    site_policy: Literal["round_robin", "weights", "least_loaded"] | None = None
    site_weights: dict[str, float] = {}

    @model_serializer(mode="wrap")
    def _omit_unset_sites(self, handler):
        # plans compiled without sites keep their JSON (and the golden files) as they were
        data = handler(self)
        return {k: v for k, v in data.items() if v or k not in _SITE_KEYS}


_SITE_KEYS = ("sites", "sites_down", "site_queues", "site_policy", "site_weights")


class Profile(_Strict):
    vo: str
    user: str
    prodSourceLabel: str
    workingGroup: str | None
    site: str | None
    cloud: str | None
    processingType: str
    taskType: str
    taskPriority: int
    campaign: str | None
    transPath: str
    # the {workflow} of names; None: the workflow's own (CWL file stem, Snakefile folder)
    workflow: str | None = None
    scopes: Scopes
    names: Names
    defaults: Defaults
    rucio: RucioSettings
    bridge: BridgeSettings = BridgeSettings()

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _default_data() -> dict[str, Any]:
    text = resources.files("swfflow.data").joinpath("default-profile.yaml").read_text()
    return yaml.safe_load(text)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = _merge(base[key], value)
        else:
            merged[key] = value
    return merged


def load_profile(path: str | os.PathLike | None = None) -> Profile:
    """The default profile, overlaid with ``path`` (or ``$SWFFLOW_PROFILE``) when given."""
    data = _default_data()
    path = path or os.environ.get(PROFILE_ENV)
    if path:
        try:
            user = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read profile: {exc.strerror}", where=str(path),
                              hint="pass an existing YAML file with --profile") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"profile is not valid YAML: {exc}", where=str(path)) from None
        if user is None:
            user = {}
        if not isinstance(user, dict):
            raise ConfigError("a profile must be a YAML mapping", where=str(path),
                              hint="see swfflow/data/default-profile.yaml for the keys")
        data = _merge(data, user)
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"profile key {key!r}: {first['msg']}", where=str(path or "default"),
                          hint="see swfflow/data/default-profile.yaml for the keys and types"
                          ) from None
