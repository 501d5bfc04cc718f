"""Planner: IR → Plan (JEDI task parameters + Rucio dataset specs). Pure."""
