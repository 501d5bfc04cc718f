"""Test doubles and helpers that tests and CI share.

Only PanDA has a double (:mod:`swfflow.testing.panda_server`): everything else swfflow talks
to (Rucio, ActiveMQ) runs for real in tests.
"""
