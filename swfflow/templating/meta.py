"""A template's ``meta.yaml``: the typed description a detector expert reads and fills.

Parameters are JSON-Schema fragments (``type``, ``enum``, ``minimum``/``maximum``, ``default``)
plus a one-line ``doc``; :func:`validate_params` checks user values with ``jsonschema`` and turns
the first failure into one :class:`~swfflow.errors.ConfigError` naming template, parameter and
what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from swfflow.errors import ConfigError

JsonType = Literal["string", "integer", "number", "boolean"]

# JSON-Schema type → CWL type (parameters become CWL tool inputs with a default).
CWL_TYPES: dict[str, str] = {"string": "string", "integer": "int", "number": "double",
                             "boolean": "boolean"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamSpec(_Strict):
    type: JsonType
    doc: str
    default: Any = None
    enum: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusiveMinimum: float | None = None  # noqa: N815 (JSON-Schema spelling)
    exclusiveMaximum: float | None = None  # noqa: N815
    # False for parameters that only size the PanDA task (swf:Sizing), not the command line
    command: bool = True

    @property
    def required(self) -> bool:
        return self.default is None

    def json_schema(self) -> dict[str, Any]:
        keys = ("type", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def expected(self) -> str:
        """Human text for the allowed values, e.g. ``integer in [0, 255]``."""
        if self.enum is not None:
            return f"one of {', '.join(map(str, self.enum))}"
        low = (f"[{_num(self.minimum)}" if self.minimum is not None else
               f"({_num(self.exclusiveMinimum)}" if self.exclusiveMinimum is not None else None)
        high = (f"{_num(self.maximum)}]" if self.maximum is not None else
                f"{_num(self.exclusiveMaximum)})" if self.exclusiveMaximum is not None else None)
        if low or high:
            return f"{self.type} in {low or '(-inf'}, {high or '+inf)'}"
        return self.type


def _num(value: float | None) -> str:
    """A bound as written: 1048576, 0.5 (never 1.04858e+06)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class PortSpec(_Strict):
    """A data input or output of a template."""

    type: Literal["File", "File[]"]
    doc: str
    # outputs: the file name ends with this; inputs: what the upstream file names end with
    suffix: str = ""
    # inputs only: how the consumer reads its producer (IR EdgeMode) …
    mode: Literal["stream", "complete"] = "complete"
    # … and whether it may be left unconnected
    optional: bool = False
    # outputs only: one output per file of this input (``<input nameroot><suffix>``); a step
    # whose output is named after an input runs once per file when that input is fed a list
    name_from: str | None = None


class ResourceSpec(_Strict):
    cores: int = Field(1, ge=1)
    mem_mb: int = Field(2000, ge=1)
    disk_mb: int = Field(1000, ge=1)
    runtime_min: int = Field(60, ge=1)


class SizingSpec(_Strict):
    """swf:Sizing defaults (JEDI splitting); may refer to parameters as ``$param``."""

    filesPerJob: int | str | None = None  # noqa: N815 (CWL extension spelling)
    maxFilesPerJob: int | str | None = None  # noqa: N815
    gbPerJob: float | str | None = None  # noqa: N815
    eventsPerJob: int | str | None = None  # noqa: N815
    nJobs: int | str | None = None  # noqa: N815


class Meta(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    description: str
    authors: list[str]
    version: str
    use_cases: list[str] = []  # requirement numbers, e.g. "req 3.7"
    parameters: dict[str, ParamSpec] = {}
    inputs: dict[str, PortSpec] = {}
    outputs: dict[str, PortSpec]
    resources: ResourceSpec = ResourceSpec()
    container: str
    sizing: SizingSpec = SizingSpec()
    retries: int = Field(0, ge=0)
    # run the library's swf_payload.py (embedded in the CWL tool, beside the rule); false for a
    # template whose .j2 files override the command (`base_command` / `shell_command` blocks)
    payload: bool = True
    path: Path | None = Field(None, exclude=True)

    @field_validator("parameters", "inputs", "outputs")
    @classmethod
    def _identifiers(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not key.isidentifier():
                raise ValueError(f"{key!r} is not an identifier (letters, digits, _)")
        return value

    @property
    def per_file_input(self) -> str | None:
        """The input whose files each give one job (outputs are named after it), if any."""
        return next((p.name_from for p in self.outputs.values() if p.name_from), None)

    @model_validator(mode="after")
    def _ports_agree(self) -> Meta:
        for out, port in self.outputs.items():
            source = self.inputs.get(port.name_from) if port.name_from else None
            if port.name_from and (source is None or source.type != "File"):
                raise ValueError(f"output {out}: name_from {port.name_from!r} must name an "
                                 f"input of type File")
        return self

    def params_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {n: p.json_schema() for n, p in self.parameters.items()},
            "required": sorted(n for n, p in self.parameters.items() if p.required),
            "additionalProperties": False,
        }


def load_meta(path: Path) -> Meta:
    """Read and check ``meta.yaml``; a malformed file is the template author's input error."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"meta.yaml is not valid YAML: {exc}", where=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("meta.yaml must be a mapping", where=str(path))
    try:
        meta = Meta.model_validate({**data, "path": path.parent})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"meta.yaml {'field ' + loc if loc else 'is invalid'}: {first['msg']}",
                          where=str(path),
                          hint="see docs/templates/README.md for the meta.yaml format") from None
    if meta.name != path.parent.name:
        raise ConfigError(f"meta.yaml name {meta.name!r} differs from its folder "
                          f"{path.parent.name!r}", where=str(path))
    for pname, spec in meta.parameters.items():
        if spec.default is not None:
            _check(meta, {pname: spec.default}, f"default of {pname!r} in {path}", partial=True)
    return meta


def coerce_cli_value(meta: Meta, name: str, text: str) -> Any:
    """Turn ``key=value`` text into a typed value (YAML scalar rules; strings stay strings)."""
    spec = meta.parameters.get(name)
    if spec is not None and spec.type == "string":
        return text
    try:
        return yaml.safe_load(text) if text else text
    except yaml.YAMLError:
        return text


def parse_assignments(meta: Meta, assignments: list[str] | tuple[str, ...]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"template {meta.name}: parameter {item!r} is not key=value",
                              hint=f"e.g. swfflow template render {meta.name} "
                                   f"{next(iter(meta.parameters), 'name')}=value")
        values[key.strip()] = coerce_cli_value(meta, key.strip(), text)
    return values


def validate_params(meta: Meta, given: dict[str, Any], *,
                    where: str | None = None) -> dict[str, Any]:
    """Defaults + given values, checked against the schema; returns the complete set."""
    if not isinstance(given, dict):
        raise ConfigError(f"template {meta.name}: parameters must be a mapping, "
                          f"not {type(given).__name__}", where=where)
    values = {n: p.default for n, p in meta.parameters.items() if p.default is not None}
    values.update(given)
    _check(meta, values, where)
    # meta order, every parameter present; numbers as floats so CWL and Snakemake agree
    return {n: float(values[n]) if meta.parameters[n].type == "number" else values[n]
            for n in meta.parameters}


def _check(meta: Meta, values: dict[str, Any], where: str | None, partial: bool = False) -> None:
    schema = meta.params_schema()
    if partial:
        schema = {**schema, "required": []}
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(values))
    if error is None:
        return
    raise ConfigError(_explain(meta, error), where=where,
                      hint=f"see `swfflow template show {meta.name}` for every parameter")


def _explain(meta: Meta, error: jsonschema.ValidationError) -> str:
    """One sentence naming the template, the parameter and what it accepts."""
    prefix = f"template {meta.name}"
    if error.validator == "additionalProperties":
        known = ", ".join(meta.parameters) or "none"
        unknown = sorted(set(error.instance) - set(meta.parameters))
        return f"{prefix}: unknown parameter {', '.join(unknown)} (known: {known})"
    if error.validator == "required":
        missing = [n for n in error.validator_value if n not in error.instance]
        spec = meta.parameters[missing[0]]
        return f"{prefix}: missing parameter {missing[0]} ({spec.expected()}: {spec.doc})"
    name = str(error.absolute_path[0]) if error.absolute_path else "?"
    spec = meta.parameters[name]
    return (f"{prefix}: parameter {name} = {error.instance!r} is invalid: "
            f"expected {spec.expected()}")
