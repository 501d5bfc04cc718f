"""Subcommands of the swfflow CLI, one module each (see swfflow/cli.py: COMMANDS)."""
