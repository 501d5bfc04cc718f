"""Find templates and render them to a CWL tool and a Snakemake rule.

One Jinja2 delimiter set serves both kinds of files, chosen so it never clashes with Snakemake's
``{{ }}`` brace escaping nor with CWL's ``$( )``/``${ }``: ``[[ expr ]]``, ``[% stmt %]``,
``[# comment #]``. ``StrictUndefined`` turns a typo in a template into an error instead of an
empty string in a workflow.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from swfflow.errors import ConfigError
from swfflow.templating.meta import CWL_TYPES, Meta, load_meta, validate_params

PAYLOAD = "swf_payload.py"
SHARED_DIR = "_lib"  # macros, layouts and the payload; not a template
# libyaml's loader when present: the pure-Python one spends ~0.1 s on each rendered tool
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DELIMITERS = dict(block_start_string="[%", block_end_string="%]",
                  variable_start_string="[[", variable_end_string="]]",
                  comment_start_string="[#", comment_end_string="#]")


def builtin_library() -> Path:
    """The library shipped with swfflow: ``templates/`` at the top of the source tree, or
    ``swfflow/_templates`` when a wheel packs it there (hatch ``force-include``)."""
    packed = Path(__file__).resolve().parents[1] / "_templates"
    return packed if packed.is_dir() else Path(__file__).resolve().parents[2] / "templates"


def library_paths(extra: Iterable[str | Path] = ()) -> list[Path]:
    """User folders first (``--library``, then ``$SWFFLOW_TEMPLATE_PATH``), built-in last, so a
    detector group can shadow or extend the shipped templates."""
    env = [p for p in os.environ.get("SWFFLOW_TEMPLATE_PATH", "").split(os.pathsep) if p]
    return [Path(p) for p in (*extra, *env)] + [builtin_library()]


@dataclass
class Library:
    roots: list[Path] = field(default_factory=library_paths)
    # per-name caches: a harness renders each template many times (compiling Jinja2 is slow)
    _metas: dict[str, Meta] = field(default_factory=dict, repr=False, compare=False)
    _environments: dict[str, jinja2.Environment] = field(default_factory=dict, repr=False,
                                                         compare=False)

    def names(self) -> list[str]:
        found = {d.name for root in self.roots if root.is_dir() for d in root.iterdir()
                 if (d / "meta.yaml").is_file() and not d.name.startswith("_")}
        return sorted(found)

    def folder(self, name: str) -> Path:
        for root in self.roots:
            if (root / name / "meta.yaml").is_file():
                return root / name
        close = difflib.get_close_matches(name, self.names(), n=3)
        raise ConfigError(
            f"unknown template {name!r}",
            hint=(f"did you mean {', '.join(close)}? " if close else "")
            + "`swfflow template list` shows every template")

    def meta(self, name: str) -> Meta:
        if name not in self._metas:
            self._metas[name] = load_meta(self.folder(name) / "meta.yaml")
        return self._metas[name]

    def metas(self) -> list[Meta]:
        return [self.meta(n) for n in self.names()]

    def shared_file(self, relative: str) -> Path:
        for root in self.roots:
            if (root / SHARED_DIR / relative).is_file():
                return root / SHARED_DIR / relative
        raise ConfigError(f"template library file {SHARED_DIR}/{relative} not found in "
                          f"{', '.join(map(str, self.roots))}")

    def environment(self, name: str) -> jinja2.Environment:
        if name not in self._environments:
            self._environments[name] = self._new_environment(name)
        return self._environments[name]

    def _new_environment(self, name: str) -> jinja2.Environment:
        loader = jinja2.FileSystemLoader([str(self.folder(name))] + [str(r) for r in self.roots])
        env = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined,
                                 keep_trailing_newline=True, trim_blocks=True,
                                 lstrip_blocks=True, autoescape=False, **DELIMITERS)
        env.filters.update(json=json.dumps, pyrepr=repr, flag=lambda n: n.replace("_", "-"))
        return env


@dataclass(frozen=True)
class RuleIO:
    """Where a rendered Snakemake rule reads and writes: Python expressions, one per port."""

    inputs: dict[str, str]
    outputs: dict[str, str]
    log: str
    input_modes: dict[str, str]  # input → "stream" | "complete"
    payload: str = PAYLOAD  # the payload script, relative to the rule file

    @property
    def mode(self) -> str:
        """The rule's ``swf_mode``: "stream" if an input is read while its producer runs."""
        return "stream" if "stream" in self.input_modes.values() else "complete"

    @property
    def mixed_modes(self) -> bool:
        """Inputs differ in mode: the rule also gets ``swf_input_modes`` (per input)."""
        return len(set(self.input_modes.values())) > 1


@dataclass(frozen=True)
class Rendered:
    name: str  # the step / rule name
    meta: Meta
    params: dict[str, Any]
    cwl: str
    smk: str


def resolve_sizing(meta: Meta, params: dict[str, Any]) -> dict[str, Any]:
    """swf:Sizing with ``$param`` references replaced by the parameter values."""
    resolved = {}
    for key, value in meta.sizing.model_dump(exclude_none=True).items():
        resolved[key] = params[value[1:]] if isinstance(value, str) and value.startswith("$") \
            else value
    return resolved


def render(library: Library, template: str, params: dict[str, Any], *, step: str,
           rule_io: RuleIO, resources: dict[str, int] | None = None,
           where: str | None = None) -> Rendered:
    """Validate ``params`` and render both files of one template for one step."""
    meta = library.meta(template)
    values = validate_params(meta, params, where=where)
    merged_resources = {**meta.resources.model_dump(), **(resources or {})}
    context = {
        "meta": meta, "params": values, "step": step, "io": rule_io,
        "resources": merged_resources, "sizing": resolve_sizing(meta, values),
        "cwl_types": CWL_TYPES, "payload": library.shared_file(PAYLOAD).read_text(),
    }
    env = library.environment(template)
    texts = {}
    for kind in ("tool.cwl.j2", "rule.smk.j2"):
        try:
            texts[kind] = env.get_template(kind).render(context)
        except jinja2.TemplateError as exc:
            raise ConfigError(f"template {template}: {kind} failed to render: {exc}",
                              where=str(meta.path / kind),
                              hint="a template bug: fix the .j2 file") from None
    _check_yaml(texts["tool.cwl.j2"], meta)
    return Rendered(step, meta, values, texts["tool.cwl.j2"], texts["rule.smk.j2"])


def _check_yaml(text: str, meta: Meta) -> None:
    try:
        yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(f"template {meta.name}: rendered tool.cwl is not valid YAML: {exc}",
                          where=str(meta.path / "tool.cwl.j2")) from None


def rule_name(template_or_step: str) -> str:
    return template_or_step.replace("-", "_")


def standalone_io(meta: Meta, rule: str) -> RuleIO:
    """Paths for a rule used on its own or as a module (``rules/*.smk``): every location comes
    from ``config`` with a default, so ``module x: config: {...}`` relocates it."""
    per_file = {p.name_from for p in meta.outputs.values() if p.name_from}
    inputs = {}
    for name, port in meta.inputs.items():
        folder = f'config.get("{name}_dir", "data/{name}")'
        pattern = f'os.path.join({folder}, "{{stf}}{port.suffix}")'
        if port.optional:
            continue
        if name in per_file:
            inputs[name] = pattern
        elif port.type == "File[]":
            inputs[name] = f"expand({pattern}, stf=glob_wildcards({pattern}).stf)"
        else:
            inputs[name] = f'config.get("{name}", "data/{name}{port.suffix}")'
    results = 'config.get("results", "results")'
    outputs = {
        name: (f'os.path.join({results}, "{rule}", "{{stf}}{port.suffix}")' if port.name_from
               else f'os.path.join({results}, "{rule}", "{rule}{port.suffix}")')
        for name, port in meta.outputs.items()}
    log = f'"logs/{rule}/{{stf}}.log"' if per_file else f'"logs/{rule}.log"'
    return RuleIO(inputs, outputs, log, {n: meta.inputs[n].mode for n in inputs})
