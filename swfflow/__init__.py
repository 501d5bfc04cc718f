"""swfflow: compile CWL and Snakemake workflows into PanDA tasks over Rucio datasets,
and drive them from ePIC DAQ run messages."""

__version__ = "0.1.0"
