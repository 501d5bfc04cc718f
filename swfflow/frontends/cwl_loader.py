"""Loading CWL documents with cwl-utils behind a per-URI cache.

cwl-utils resolves nothing by itself (``run:`` stays a URI string) and re-parses a file every
time it is asked for it; at 500 steps an uncached walk is 14x slower (reference/snakemake-cwl.md
§8). :class:`DocumentCache` parses each file once, keeps the ruamel tree (for line numbers and
for the verbatim tool dict a runner needs) next to the typed cwl-utils objects, and indexes the
processes of packed ``$graph`` documents by id so ``run: "#tool"`` costs a dict lookup.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlparse

from ruamel.yaml.error import MarkedYAMLError
from schema_salad.exceptions import ValidationException
from schema_salad.utils import yaml_no_ts

from cwl_utils.parser import load_document_by_yaml
from schema_salad.fetcher import DefaultFetcher
from schema_salad.runtime import LoadingOptions

from ..errors import WorkflowError
from .cwl_pchain import is_pchain_run

# "file.cwl:12:5:" at the start of a schema-salad message line
_SALAD_LOCATION = re.compile(r"^(?P<file>[^\s:][^:\n]*):(?P<line>\d+):(?P<col>\d+):", re.M)


@dataclass(frozen=True)
class Loaded:
    """One process (tool, workflow, ...) as cwl-utils sees it, plus its source text tree."""

    process: Any  # cwl_utils.parser.cwl_v1_x.Process
    raw: Mapping[str, Any]  # the ruamel map it was loaded from (has .lc line info)
    uri: str  # file URI, with #fragment for a $graph member
    root: Mapping[str, Any]  # the whole document (cwlVersion, $namespaces live here)

    @property
    def path(self) -> str:
        return uri_to_path(urldefrag(self.uri)[0])


def uri_to_path(uri: str) -> str:
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme in ("", "file") else uri


def path_to_uri(path: str | Path) -> str:
    return Path(path).resolve().as_uri()


def absolute_locations(value: Any, base: Path) -> Any:
    """File/Directory values (in a job object or a default) with absolute ``location`` s, as
    cwltool resolves them: a ``location`` is a URI reference, percent-encoded (``A%3Ab`` is the
    file ``A:b``, ``item%20%231.txt`` is ``item #1.txt``), relative to ``base`` (a folder); a
    ``path`` is a file name. ``basename`` is the decoded last segment."""
    if isinstance(value, list):
        return [absolute_locations(v, base) for v in value]
    if not isinstance(value, Mapping):
        return value
    if value.get("class") not in ("File", "Directory"):
        return {k: absolute_locations(v, base) for k, v in value.items()}
    value = dict(value)
    path, location = value.pop("path", None), value.get("location")
    if location and not _is_absolute_uri(str(location)):
        location = urljoin(Path(base).resolve().as_uri() + "/", str(location))
    elif not location and path:  # cwl-utils gives a document's `path` back as a URI
        location = str(path) if _is_absolute_uri(str(path)) \
            else (Path(base) / str(path)).resolve().as_uri()
    if location:
        value["location"] = str(location)
        if not str(location).startswith("_:"):
            value.setdefault("basename", unquote(urlparse(str(location)).path.rstrip("/")
                                                 .rsplit("/", 1)[-1]))
    for key in ("secondaryFiles", "listing"):
        if key in value:
            value[key] = absolute_locations(value[key], base)
    return value


def _is_absolute_uri(location: str) -> bool:
    return "://" in location or location.startswith(("file:", "_:"))


def line_of(node: Any, key: str | int | None = None) -> int | None:
    """1-based line of ``node`` (or of ``key`` inside it) in its YAML file, if known."""
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        if key is None:
            return lc.line + 1
        return lc.key(key)[0] + 1 if isinstance(node, Mapping) else lc.item(key)[0] + 1
    except (KeyError, IndexError, TypeError):
        return lc.line + 1


def salad_where(message: str) -> str | None:
    """The most specific ``file:line`` a schema-salad message points at (its last location)."""
    found = list(_SALAD_LOCATION.finditer(message))
    if not found:
        return None
    last = found[-1]
    return f"{last['file']}:{last['line']}"


class DocumentCache:
    """URI -> loaded process. One YAML parse and one cwl-utils load per file."""

    def __init__(self) -> None:
        self._files: dict[str, dict[str, Loaded]] = {}  # file URI -> {process URI: Loaded}
        self.file_loads = 0  # number of files parsed (tests assert the cache is used)

    def get(self, uri: str, *, referenced_from: str | None = None) -> Loaded:
        """The process at ``uri`` (``file:///a.cwl`` or ``file:///packed.cwl#tool``)."""
        file_uri, fragment = urldefrag(uri)
        members = self._files.get(file_uri)
        if members is None:
            members = self._load_file(file_uri, referenced_from)
            self._files[file_uri] = members
        if fragment:
            found = members.get(uri) or members.get(f"{file_uri}#{fragment.split('/')[-1]}")
        else:
            found = members.get(file_uri) or members.get(f"{file_uri}#main")
        if found is None:
            known = ", ".join(sorted("#" + urldefrag(u)[1] for u in members if "#" in u))
            raise WorkflowError(
                f"no process {('#' + fragment) if fragment else ''} in {uri_to_path(file_uri)}",
                where=referenced_from,
                hint=f"a packed document names its processes: use one of {known}" if known
                else "check the run: reference",
            )
        return found

    def _load_file(self, file_uri: str, referenced_from: str | None) -> dict[str, Loaded]:
        path = Path(uri_to_path(file_uri))
        if not path.is_file():
            raise WorkflowError(
                f"cannot read {path}: no such file",
                where=referenced_from,
                hint="check the path of the run: reference (relative to the file that names it)",
            )
        self.file_loads += 1
        root = parse_yaml(path)
        if not isinstance(root, Mapping) or ("class" not in root and "$graph" not in root):
            raise WorkflowError(f"{path} is not a CWL document", where=f"{path}:1",
                                hint="a CWL file is a YAML mapping with cwlVersion and class")
        try:
            options = LoadingOptions(fileuri=file_uri, fetcher=_PchainAwareFetcher({}, None))
            loaded = load_document_by_yaml(root, file_uri, options, load_all=True)
        except ValidationException as exc:
            text = str(exc)
            raise WorkflowError(f"invalid CWL document:\n{text}",
                                where=salad_where(text) or f"{path}:1",
                                hint="fix the fields named above (CWL v1.2 schema)") from None
        if "$graph" not in root:
            return {file_uri: Loaded(loaded, root, file_uri, root)}
        members: dict[str, Loaded] = {}
        raw_by_id = {str(item.get("id", "")).lstrip("#"): item for item in root["$graph"]}
        for process in loaded if isinstance(loaded, list) else [loaded]:
            fragment = urldefrag(process.id)[1]
            members[f"{file_uri}#{fragment}"] = Loaded(
                process, raw_by_id.get(fragment, root), f"{file_uri}#{fragment}", root)
        return members


class _PchainAwareFetcher(DefaultFetcher):
    """pchain's ``run: prun`` names no file (PanDA touches empty ones so cwl-utils validates);
    we accept those names instead of writing files next to the user's workflow."""

    def check_exists(self, url: str) -> bool:
        # a missing `run:` file is reported by DocumentCache.get with the step's line and a
        # hint, rather than buried in a schema-salad message
        return is_pchain_run(url) or url.endswith(".cwl") or super().check_exists(url)


def parse_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowError(f"cannot read {path}: {exc}", hint="is it a UTF-8 text file?") from None
    try:
        return yaml_no_ts().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise WorkflowError(f"malformed YAML: {exc.problem or exc.context}",
                            where=f"{path}:{line}",
                            hint="check indentation, colons and brackets around that line") from None
