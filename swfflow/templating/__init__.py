"""The template library for detector experts: typed templates rendered to CWL and Snakemake,
and composed into workflows from a short YAML description (see docs/templates/README.md)."""
