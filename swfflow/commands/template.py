"""``swfflow template``: list, show, render, create, compose and check templates."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click
import yaml
from rich.console import Console
from rich.table import Table

from swfflow.errors import ConfigError, RunFailed
from swfflow.templating import check as checks
from swfflow.templating import docs
from swfflow.templating.compose import compose, load_spec, write
from swfflow.templating.meta import parse_assignments
from swfflow.templating.render import (PAYLOAD, Library, builtin_library, library_paths, render,
                                       rule_name, standalone_io)

_console = Console()
_library_option = click.option(
    "--library", "libraries", multiple=True, type=click.Path(file_okay=False),
    help="Extra template folder, searched before the built-in library (repeatable; "
         "also $SWFFLOW_TEMPLATE_PATH).")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _library(libraries: tuple[str, ...]) -> Library:
    return Library(library_paths(libraries))


@click.group("template")
def template_group() -> None:
    """Parameterized workflow templates for detector, DAQ and computing experts.

    \b
    Pick a template, set its typed parameters, and get a CWL tool and a Snakemake rule;
    or describe a whole workflow in a short YAML spec and compose it:
      swfflow template list
      swfflow template show stf-reco
      swfflow template render stf-reco detector=ecal threshold=40 -o out/
      swfflow template compose examples/templated/spec.yaml -o out/
    """


@template_group.command("list")
@_library_option
@_json_option
def list_cmd(libraries: tuple[str, ...], as_json: bool) -> None:
    """List the templates with their version and use cases."""
    metas = _library(libraries).metas()
    if as_json:
        click.echo(json.dumps([{"name": m.name, "version": m.version, "use_cases": m.use_cases,
                                "description": m.description, "path": str(m.path)}
                               for m in metas], indent=1))
        return
    table = Table("template", "version", "use cases", "description")
    for meta in metas:
        table.add_row(meta.name, meta.version, ", ".join(meta.use_cases),
                      meta.description.split(". ")[0].rstrip("."))
    _console.print(table)


@template_group.command("show")
@click.argument("name")
@_library_option
@_json_option
def show_cmd(name: str, libraries: tuple[str, ...], as_json: bool) -> None:
    """Show a template's parameters, inputs, outputs and defaults."""
    meta = _library(libraries).meta(name)
    if as_json:
        click.echo(json.dumps({**meta.model_dump(mode="json"), "path": str(meta.path)}, indent=1))
        return
    from rich.markdown import Markdown

    _console.print(Markdown(docs.template_readme(meta).removeprefix(docs.GENERATED)))


@template_group.command("render")
@click.argument("name")
@click.argument("assignments", nargs=-1, metavar="KEY=VALUE...")
@click.option("--params", "params_file", type=click.Path(exists=True, dir_okay=False),
              help="YAML file of parameters (KEY=VALUE arguments override it).")
@click.option("-o", "--outdir", type=click.Path(file_okay=False),
              help="Write <step>.cwl and <step>.smk (+ the payload) here; default: print both.")
@click.option("--step", help="Step / rule name (default: the template name).")
@_library_option
@_json_option
def render_cmd(name: str, assignments: tuple[str, ...], params_file: str | None,
               outdir: str | None, step: str | None, libraries: tuple[str, ...],
               as_json: bool) -> None:
    """Render template NAME with parameters to a CWL tool and a Snakemake rule.

    Values are typed by the template (see `swfflow template show NAME`); a wrong type, a value
    out of range or not in the allowed list is an error (exit 2)."""
    library = _library(libraries)
    meta = library.meta(name)
    params = _params_file(params_file) if params_file else {}
    params.update(parse_assignments(meta, assignments))
    rule = rule_name(step or name)
    rendered = render(library, name, params, step=rule, rule_io=standalone_io(meta, rule),
                      where="command line")
    if outdir:
        target = Path(outdir)
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{rule}.cwl").write_text(rendered.cwl)
        (target / f"{rule}.smk").write_text(rendered.smk)
        payload = library.shared_file(PAYLOAD)
        (target / payload.name).write_text(payload.read_text())
    if as_json:  # the texts, or where they were written
        texts = {"cwl": rendered.cwl, "smk": rendered.smk} if not outdir else \
            {kind: str(Path(outdir, f"{rule}.{kind}")) for kind in ("cwl", "smk")}
        click.echo(json.dumps({"template": name, "step": rule, "params": rendered.params,
                               **texts}, indent=1))
    elif outdir:
        click.echo(f"wrote {outdir}/{rule}.cwl and {outdir}/{rule}.smk")
    else:
        click.echo(rendered.cwl + "\n" + rendered.smk, nl=False)


def _params_file(path: str) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"parameter file is not valid YAML: {exc}", where=path) from None
    if not isinstance(data, dict):
        raise ConfigError("parameter file must be a mapping of name: value", where=path)
    return data


@template_group.command("new")
@click.argument("name")
@click.option("--library", "library_dir", type=click.Path(file_okay=False), default="templates",
              show_default=True, help="Folder to create the template in.")
@click.option("--from", "source", default="stf-reco", show_default=True,
              help="Existing template to start from.")
def new_cmd(name: str, library_dir: str, source: str) -> None:
    """Create template NAME (meta.yaml, tool.cwl.j2, rule.smk.j2, test/) from an existing one."""
    if not name.replace("-", "").isalnum() or not name[:1].isalpha() or name != name.lower():
        raise ConfigError(f"template name {name!r} must be lower case letters, digits and -")
    target = Path(library_dir) / name
    if target.exists():
        raise ConfigError(f"{target} already exists", hint="choose another name")
    library = Library(library_paths([library_dir]))
    origin = library.folder(source)
    meta = yaml.safe_load((origin / "meta.yaml").read_text())
    meta.update(name=name, version="0.1.0", authors=["<your name>"],
                description=f"<what {name} does, in one or two sentences>")
    (target / "test").mkdir(parents=True)
    (target / "meta.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    for kind in ("tool.cwl.j2", "rule.smk.j2"):
        (target / kind).write_text((origin / kind).read_text())
    (target / "test" / "defaults.yaml").write_text("{}\n")
    click.echo(f"created {target}/ from {source}: edit meta.yaml (parameters, inputs, outputs) "
               f"and the subcommand in the .j2 files, then run `swfflow template check "
               f"--library {library_dir} {name}`")


@template_group.command("compose")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--outdir", type=click.Path(file_okay=False),
              help="Write <name>.cwl, tools/, Snakefile, rules/ here (default: beside SPEC).")
@_library_option
@_json_option
def compose_cmd(spec: str, outdir: str | None, libraries: tuple[str, ...], as_json: bool) -> None:
    """Compose a workflow from SPEC (steps = template + params + what feeds them) into a CWL
    workflow and a Snakefile describing the same graph."""
    library = _library(libraries)
    composition = compose(load_spec(Path(spec)), library, where=spec)
    target = Path(outdir) if outdir else Path(spec).parent
    written = write(composition, library, target)
    if as_json:
        click.echo(json.dumps({"workflow": str(target / f"{composition.spec.name}.cwl"),
                               "snakefile": str(target / "Snakefile"),
                               "steps": list(composition.steps),
                               "files": [str(p) for p in written]}, indent=1))
        return
    click.echo(f"composed {composition.spec.name}: {len(composition.steps)} steps → "
               f"{target / (composition.spec.name + '.cwl')} and {target / 'Snakefile'}")


@template_group.command("check")
@click.argument("names", nargs=-1)
@click.option("-o", "--outdir", type=click.Path(file_okay=False),
              help="Keep the harness workflow here (default: a temporary folder).")
@_library_option
@_json_option
def check_cmd(names: tuple[str, ...], outdir: str | None, libraries: tuple[str, ...],
              as_json: bool) -> None:
    """Render every template (or NAMES) with every test/*.yaml parameter set, then validate
    the CWL with cwltool and the rules with `snakemake -n --lint`, in one batch each."""
    library = _library(libraries)
    cases = checks.cases(library, list(names) or None)
    with tempfile.TemporaryDirectory(prefix="swfflow-template-check-") as scratch:
        workdir = Path(outdir or scratch)
        checks.write_harness(library, cases, workdir)
        results = {"cwltool": checks.validate_cwl(workdir / f"{checks.HARNESS_NAME}.cwl"),
                   "snakemake": checks.lint_snakemake(workdir)}
    if as_json:
        click.echo(json.dumps({"cases": [f"{c.template}/{c.param_set}" for c in cases],
                               **{k: {"ok": r.ok, "output": r.output[-4000:]}
                                  for k, r in results.items()}}, indent=1))
    else:
        click.echo(f"{len(cases)} cases rendered: " + ", ".join(
            f"{c.template}/{c.param_set}" for c in cases))
        for tool, result in results.items():
            click.echo(f"{tool}: {'ok' if result.ok else 'FAILED'}")
            if not result.ok:
                click.echo(result.output[-4000:], err=True)
    failed = [tool for tool, result in results.items() if not result.ok]
    if failed:
        raise RunFailed(f"template check failed: {', '.join(failed)}",
                        hint="the tool output says which file and field")


@template_group.command("docs")
@click.option("--check", "check_only", is_flag=True,
              help="Only report stale files (exit 1), write nothing (for CI).")
def docs_cmd(check_only: bool) -> None:
    """Regenerate the built-in library's generated files: templates/*/README.md,
    docs/templates/index.md and the Snakemake modules rules/*.smk."""
    library = Library([builtin_library()])
    repo = builtin_library().parent
    files = docs.generated_files(library, repo)
    if check_only:
        outdated = docs.stale(files)
        for path in outdated:
            click.echo(f"stale: {path.relative_to(repo)}")
        if outdated:
            raise RunFailed(f"{len(outdated)} generated file(s) are stale",
                            hint="run `swfflow template docs` and commit the result")
        click.echo(f"{len(files)} generated files up to date")
        return
    changed = docs.write_files(files)
    click.echo(f"{len(changed)} of {len(files)} generated files updated")
