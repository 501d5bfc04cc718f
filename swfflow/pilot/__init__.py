"""swfflow's pilot: takes jobs of a PanDA queue through PanDA's pilot API and runs them
(``swfflow pilot --queue Q``; docs/panda.md)."""
