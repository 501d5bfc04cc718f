"""How the flow's leaf jobs become tasks (a part of :class:`~swfflow.drive.flow_run.FlowRun`).

A leaf job whose inputs are exactly the datasets its planned task reads runs as that task,
unchanged (the backend splits the dataset into jobs); any other runs as a value task — the
planned task with the job's values, or a run-time instance of the leaf's task. What the
engine gets back: the task's output object, where a file port the executor cannot read back
(PanDA) is a :class:`~swfflow.drive.datasets.DatasetRef` to its output dataset.
"""

from __future__ import annotations

from typing import Any

from swfflow import ir
from swfflow.drive.activity import Activity
from swfflow.drive.datasets import DatasetRef, DatasetValues, dataset_refs, is_array, \
    reads_datasets
from swfflow.drive.engine import label_indices
from swfflow.drive.instances import instance_of, whole_dataset, with_values
from swfflow.errors import RunFailed
from swfflow.plan.model import RELEASE_AFTER_PARENTS, TaskSpec


class LeafJobs:
    """The leaf side of a flow run: what FlowRun gives the engine as its ``leaf`` callback.
    The attributes and methods below the annotations are FlowRun's."""

    by_key: dict[str, TaskSpec]
    templates: dict[str, TaskSpec]
    values: DatasetValues
    activity: Activity
    catalog: Any
    outputs_of: Any

    def _submit(self, spec: TaskSpec) -> Any:
        raise NotImplementedError

    def _wait_writer(self, key: str) -> None:
        raise NotImplementedError

    def _expression(self, spec: TaskSpec, job: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _splits(self, step: ir.Step, inputs: dict[str, Any]) -> bool:
        """The planned task splits the step's scatter over a dataset, and the scattered
        input really is that dataset: JEDI makes the jobs, not the engine."""
        spec = self.by_key.get(step.native.get("task", ""))
        return spec is not None and reads_datasets(spec, inputs) and \
            spec.payload.get("split_port") in (step.scatter.ports if step.scatter else ())

    def _leaf(self, step: ir.Step, job: dict[str, Any], label: str) -> dict[str, Any]:
        with self.activity.leaf():
            return self._leaf_job(step, job, label)

    def _leaf_job(self, step: ir.Step, job: dict[str, Any], label: str) -> dict[str, Any]:
        path, indices = step.native["task"], label_indices(label)
        key = path + "".join(f".{i}" for i in indices)
        compiled = self.by_key.get(key)
        if compiled is not None and compiled.params and reads_datasets(compiled, job):
            outputs = self._dataset_task(compiled, step, job)
            if outputs is not None:
                return outputs
            # a gather over datasets that came out empty: CWL runs it once, on empty lists
        job = self.values.materialize(job)
        if compiled is not None:
            spec = with_values(compiled, job, dataset_inputs=False)
        elif path in self.templates:
            spec = instance_of(self.templates[path], key, indices, job)
        else:
            raise RunFailed(f"step {path}: the plan has no task for it",
                            hint="the plan and its flow disagree: compile the workflow again")
        if spec.kind == ir.StepKind.EXPRESSION.value:
            return self._expression(spec, job)
        live = self._submit(spec)
        self._wait_writer(spec.key)
        outputs = self.outputs_of(live.task_id)
        # an executor that cannot read a task's output object back (PanDA): its files are
        # in the task's output datasets, listed when someone needs them (as a dataset task's)
        return {**{port: DatasetRef(did, writer=spec.key,
                                    single=not is_array(step.outputs[port].type))
                   for port, did in spec.outputs.items()
                   if port in step.outputs and port not in outputs}, **outputs}

    def _dataset_task(self, spec: TaskSpec, step: ir.Step,
                      job: dict[str, Any]) -> dict[str, Any] | None:
        """The step's outputs, its planned task submitted as it is; None for a gather whose
        datasets are empty (no job would run: the caller runs it on the values)."""
        ports = {i.port for i in spec.inputs if i.dataset is not None}
        # split by the backend: a scatter over the dataset, or jobs the user sized
        split = spec.payload.get("split_port") is not None or bool(spec.payload.get("chunked"))
        # a complete edge, or a gather (one job over whole datasets): the inputs must be whole
        if spec.release == RELEASE_AFTER_PARENTS or not split:
            for ref in dataset_refs({p: job[p] for p in ports}):
                self.values.wait(ref)
        spec = with_values(spec, {p: v for p, v in job.items() if p not in ports},
                           dataset_inputs=True)
        if not split:
            with self._lock:
                count = len(self.catalog.list_files(spec.params["dsForIN"]))
            if count == 0:
                return None
            spec = whole_dataset(spec, count)
        live = self._submit(spec)
        outputs: dict[str, Any] = {
            port: DatasetRef(did, writer=spec.key,
                             single=not split and not is_array(step.outputs[port].type))
            for port, did in spec.outputs.items() if port in step.outputs}
        if set(step.outputs) - set(outputs):  # parameter outputs: known once it is done
            self._wait_writer(spec.key)
            values = self.outputs_of(live.task_id)
            outputs.update({p: values.get(p) for p in step.outputs if p not in outputs})
        return outputs

