"""Runner names, in one place: which runners run locally, and which keep everything in one process.

Beam-free at import (the settings name the runner without Beam when no Beam option is given);
Beam's option views are imported by the functions that read them."""

from __future__ import annotations

from typing import Any

DEFAULT_RUNNER = "DirectRunner"
"""The runner of a launch that names none."""
LOCAL_RUNNERS = ("DirectRunner", "direct", "BundleBasedDirectRunner", "FnApiRunner", "SwitchingDirectRunner")
"""Runners whose workers run on this machine (progress lines are printed there)."""
JOB_SERVER_RUNNERS = ("PortableRunner", "FlinkRunner", "SparkRunner")
"""Runners that hand the job to a (Java) job server, which also reads options Python's Beam does not
know (``--max_bundle_size``, ``--checkpointing_interval``, ...)."""
IN_MEMORY_RUNNERS = (None, "DirectRunner", "direct", "SwitchingDirectRunner")
"""Runners that, in their default ``in_memory`` mode, run every stage in one process with one worker."""


def runner_name(options: Any) -> str:
    """The runner's name as given in Beam's ``PipelineOptions`` (``DirectRunner`` when none is)."""
    if options is None:
        return DEFAULT_RUNNER
    from apache_beam.options.pipeline_options import StandardOptions

    runner = options.view_as(StandardOptions).runner
    if runner is None:
        return DEFAULT_RUNNER
    return runner if isinstance(runner, str) else type(runner).__name__


EMBEDDED_FLINK = (None, "[local]", "[auto]")
"""``--flink_master`` values with which the FlinkRunner starts Flink inside this process."""


def workers_see_this_disk(options: Any) -> bool:
    """Whether the job's workers run on this machine and can read its disk: the local runners, a
    portable job whose workers run in the launcher (``--environment_type LOOPBACK``), an embedded
    Flink. A cluster's workers (``--environment_type EXTERNAL``/``DOCKER``/``PROCESS`` on other hosts)
    see only what the bucket holds."""
    if runner_name(options) in LOCAL_RUNNERS:
        return True
    from apache_beam.options.pipeline_options import PortableOptions

    if (options.view_as(PortableOptions).environment_type or "").upper() == "LOOPBACK":
        return True
    return runner_name(options) == "FlinkRunner" and options.get_all_options().get("flink_master") in EMBEDDED_FLINK


def runs_in_one_process(options: Any) -> bool:
    """True for the in-memory DirectRunner (the default local run): one process, one worker."""
    if options is None:
        return True
    if runner_name(options) not in IN_MEMORY_RUNNERS:
        return False
    from apache_beam.options.pipeline_options import DirectOptions

    return options.view_as(DirectOptions).direct_running_mode in (None, "in_memory")
