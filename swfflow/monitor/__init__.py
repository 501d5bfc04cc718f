"""The monitor room: one status model (:mod:`.model`), the collectors that fill it from the
stores (:mod:`.collect`), and what reads it: the web app with its REST API and server-sent
events (:mod:`.app`), the Prometheus metrics (:mod:`.metrics`) and the DAG picture
(:mod:`.dag`). Only the CLI's command modules import this room (import contract)."""
