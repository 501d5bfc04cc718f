"""``swfflow profile install``: make ``snakemake --profile panda`` work.

Snakemake looks a profile name up in the current folder, then in its user config folder
(``platformdirs.AppDirs("snakemake", "snakemake").user_config_dir``, i.e.
``$XDG_CONFIG_HOME/snakemake`` on Linux), then the site folder. The profile ships with swfflow
as ``profiles/panda/``; this command copies it to the user folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from swfflow.errors import ConfigError

PROFILE_NAME = "panda"


def bundled_profile() -> Path:
    """``profiles/panda``: inside an installed wheel (hatch force-include), else the checkout."""
    package = Path(__file__).resolve().parents[1]
    candidates = [package / "_profiles" / PROFILE_NAME,
                  package.parent / "profiles" / PROFILE_NAME]
    for folder in candidates:
        if (folder / "config.yaml").is_file():
            return folder
    raise ConfigError("swfflow's Snakemake profile (profiles/panda/config.yaml) is missing",
                      where=str(candidates[-1]), hint="reinstall swfflow from its source tree")


def user_profile_dir(name: str = PROFILE_NAME) -> Path:
    from platformdirs import AppDirs
    return Path(AppDirs("snakemake", "snakemake").user_config_dir) / name


@click.group("profile")
def profile_group() -> None:
    """Install the Snakemake 'panda' profile (executor swfpanda)."""


@profile_group.command("install")
@click.option("--force", is_flag=True, help="Replace an existing, different profile.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def install_cmd(force: bool, as_json: bool) -> None:
    """Copy profiles/panda to Snakemake's user config folder, so that
    `snakemake --profile panda` works from any folder.

    \b
    Examples:
      swfflow profile install
      snakemake --profile panda -n          # offline check
      snakemake --profile panda             # run on PanDA
    """
    source = bundled_profile()
    target = user_profile_dir()
    new = (source / "config.yaml").read_text()
    existing = target / "config.yaml"
    if existing.is_file() and existing.read_text() != new and not force:
        raise ConfigError("a different Snakemake profile 'panda' is already installed",
                          where=str(existing), hint="use --force to replace it")
    target.mkdir(parents=True, exist_ok=True)
    for item in sorted(source.iterdir()):
        if item.is_file():
            shutil.copy2(item, target / item.name)
    if as_json:
        click.echo(json.dumps({"profile": PROFILE_NAME, "path": str(target)}))
    else:
        click.echo(f"Snakemake profile '{PROFILE_NAME}' installed in {target}")


@profile_group.command("path")
def path_cmd() -> None:
    """Print where `swfflow profile install` puts the profile."""
    click.echo(str(user_profile_dir()))
