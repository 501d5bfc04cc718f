"""Values the driver needs at run time: a task's inputs (for ``when`` and dynamic
``valueFrom``), and the workflow's output object, from the catalog and finished tasks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from swfflow.backends.base import Catalog
from swfflow.errors import RunFailed, SwfflowError
from swfflow.frontends.cwl_expr import evaluate
from swfflow.plan.model import Plan, TaskSpec
from swfflow.runtime.files import file_value

if TYPE_CHECKING:
    from swfflow.drive.driver import Driver

# run-time evaluation may use JavaScript whatever the tool declared: the workflow validated it
_EVAL_REQUIREMENTS = ({"class": "InlineJavascriptRequirement"},)


def _job_order(cwl_file: dict[str, Any]) -> str:
    return cwl_file["location"]


class ValueResolver:
    def __init__(self, plan: Plan, catalog: Catalog, driver: Driver):
        self.plan = plan
        self.catalog = catalog
        self.driver = driver

    def _files(self, did: str) -> list[dict[str, Any]]:
        return [file_value(r) for r in self.catalog.list_files(did)]

    def _from_sources(self, sources: tuple[str, ...] | list[str]) -> list[Any]:
        found = []
        for source in sources:
            step, _, port = source.rpartition("/")
            if not step:
                found.append(self.plan.inputs.get(port))
                continue
            tasks = sorted((t for t in self.driver.tasks.values() if t.spec.step == step),
                           key=lambda t: t.spec.scatter_index)
            values = [self.driver.task_outputs(t.spec.key).get(port) for t in tasks]
            found.append(values[0] if len(tasks) == 1 and not tasks[0].spec.scatter_index
                         else values)
        return found

    def resolve(self, spec: TaskSpec) -> tuple[TaskSpec, dict[str, Any]]:
        """The task with every value the driver can now compute written into its job, and
        the step's input object (datasets as lists of files) for its `when`."""
        from swfflow.drive.driver import with_job_values

        inputs: dict[str, Any] = {}
        computed: dict[str, Any] = {}
        for item in spec.inputs:
            if item.dataset is not None:
                inputs.setdefault(item.port, [])
                inputs[item.port] += self._files(item.dataset) \
                    if self.catalog.dataset_exists(item.dataset) else []
            elif item.value is not None or (not item.sources and item.expression is None):
                inputs[item.port] = item.value
            else:
                found = self._from_sources(item.sources)
                inputs[item.port] = found[0] if len(found) == 1 else found
                computed[item.port] = inputs[item.port]
        for item in spec.inputs:
            if item.expression is not None:
                inputs[item.port] = computed[item.port] = self._eval(
                    item.expression, inputs, spec, self_value=inputs.get(item.port))
        return (with_job_values(spec, computed) if computed else spec), inputs

    def condition(self, spec: TaskSpec, inputs: dict[str, Any]) -> bool:
        result = self._eval(spec.when or "true", inputs, spec)
        if not isinstance(result, bool):
            raise RunFailed(f"when: {spec.when!r} returned {result!r}, not a boolean",
                            where=spec.step, hint="a CWL `when` must be true or false")
        return result

    def _eval(self, expression: str, inputs: dict[str, Any], spec: TaskSpec, *,
              self_value: Any = None) -> Any:
        try:
            return evaluate(expression, inputs, self_value=self_value,
                            requirements=_EVAL_REQUIREMENTS, where=spec.step)
        except SwfflowError as exc:
            raise RunFailed(exc.what, where=exc.where, hint=exc.hint) from None

    def output(self, sources: list[str], cwl_type: str) -> Any:
        values = []
        for source in sources:
            step, _, port = source.rpartition("/")
            producer = next((t for t in self.plan.tasks
                             if t.step == step and port in t.outputs), None)
            if producer is not None:
                # DIDs carry the job number: sorting restores the order of the inputs
                files = sorted(self._files(producer.outputs[port]), key=_job_order)
                values.append(files if cwl_type.rstrip("?").endswith("[]")
                              else (files[0] if files else None))
            else:
                values.extend(self._from_sources([source]))
        return values[0] if len(sources) == 1 else values
