"""``--strategy`` -> ``tf.distribute.Strategy``, and the mixed-precision policy.

Modelled on ``official/common/distribute_utils.py`` (tensorflow/models): a pure resolution
step (:func:`resolve_strategy`, testable without devices) and a constructor
(:func:`make_strategy`).

=================  ==============================================================
``auto``           MirroredStrategy on >1 GPU, OneDeviceStrategy on one GPU, the
                   default strategy on CPU
``default``        the default (no-op) strategy on the default device
``one-device``     OneDeviceStrategy on GPU 0 (CPU only with ``allow_cpu``)
``mirrored``       MirroredStrategy on all GPUs (CPU only with ``allow_cpu``)
``multi-worker``   MultiWorkerMirroredStrategy from ``TF_CONFIG`` (CPU or GPU workers)
=================  ==============================================================
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings

import tensorflow as tf

from mnist_batch.config import TRAIN_STRATEGIES


@dataclasses.dataclass(frozen=True)
class StrategyChoice:
    """What :func:`make_strategy` will build.

    Attributes:
      kind: ``"default"``, ``"one-device"``, ``"mirrored"`` or ``"multi-worker"``.
      devices: device strings for one-device / mirrored (empty otherwise).
    """

    kind: str
    devices: tuple[str, ...] = ()


def parse_tf_config(value: str | None) -> dict:
    """Parses and checks ``TF_CONFIG`` for multi-worker training.

    Returns:
      The parsed dict with ``cluster`` (holding ``worker``) and ``task`` (``type``, ``index``).

    Raises:
      ValueError: naming ``strategy`` -- unset, not JSON, or missing cluster / task fields.
    """
    if not value:
        raise ValueError("strategy 'multi-worker' needs the TF_CONFIG environment variable (cluster and task)")
    try:
        config = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"strategy 'multi-worker': TF_CONFIG is not valid JSON ({exc})") from exc
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not (cluster.get("worker") or cluster.get("chief")):
        raise ValueError("strategy 'multi-worker': TF_CONFIG has no cluster.worker list")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError("strategy 'multi-worker': TF_CONFIG has no task {type, index}")
    members = cluster.get(task["type"]) or []
    if not 0 <= int(task["index"]) < len(members):
        raise ValueError(f"strategy 'multi-worker': TF_CONFIG task {task} is not in the cluster {cluster}")
    return config


def resolve_strategy(name: str, *, num_gpus: int, allow_cpu: bool = False, tf_config: str | None = None):
    """Decides which strategy ``name`` means on a machine with ``num_gpus`` GPUs.

    Args:
      name: one of :data:`mnist_batch.config.TRAIN_STRATEGIES`.
      num_gpus: visible GPUs.
      allow_cpu: let ``one-device`` / ``mirrored`` fall back to the CPU.
      tf_config: the ``TF_CONFIG`` value (multi-worker only).

    Returns:
      A :class:`StrategyChoice`.

    Raises:
      ValueError: naming ``strategy`` for an unknown name or an impossible combination.
    """
    if name not in TRAIN_STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(TRAIN_STRATEGIES)}, got {name!r}")
    if num_gpus < 0:
        raise ValueError(f"num_gpus must be >= 0, got {num_gpus}")
    if name == "auto":
        if num_gpus > 1:
            return StrategyChoice("mirrored", tuple(f"/gpu:{i}" for i in range(num_gpus)))
        if num_gpus == 1:
            return StrategyChoice("one-device", ("/gpu:0",))
        return StrategyChoice("default")
    if name == "default":
        return StrategyChoice("default")
    if name in ("one-device", "mirrored"):
        if num_gpus == 0:
            if not allow_cpu:
                raise ValueError(
                    f"strategy {name!r} needs a GPU and none is visible; pass --allow-cpu to run it on the CPU "
                    "(useful only for testing) or use --strategy auto"
                )
            return StrategyChoice(name, ("/cpu:0",))
        if name == "one-device":
            return StrategyChoice(name, ("/gpu:0",))
        return StrategyChoice(name, tuple(f"/gpu:{i}" for i in range(num_gpus)))
    parse_tf_config(tf_config)
    return StrategyChoice("multi-worker")


def make_strategy(name: str = "auto", *, allow_cpu: bool = False) -> tf.distribute.Strategy:
    """Builds the strategy ``name`` means here (see the module table).

    ``multi-worker`` must be created before any other TensorFlow op runs in the process,
    and every worker of ``TF_CONFIG`` must call it.

    Raises:
      ValueError: see :func:`resolve_strategy`.
    """
    choice = resolve_strategy(
        name,
        num_gpus=len(tf.config.list_physical_devices("GPU")),
        allow_cpu=allow_cpu,
        tf_config=os.environ.get("TF_CONFIG"),
    )
    if choice.kind == "default":
        return tf.distribute.get_strategy()
    if choice.kind == "one-device":
        return tf.distribute.OneDeviceStrategy(choice.devices[0])
    if choice.kind == "mirrored":
        return tf.distribute.MirroredStrategy(devices=list(choice.devices))
    communication = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=communication)


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """True for MultiWorkerMirroredStrategy (trained with the custom loop)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def worker_task(strategy: tf.distribute.Strategy) -> tuple[str | None, int]:
    """``(task_type, task_id)`` of this process; ``(None, 0)`` outside a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not is_multi_worker(strategy):
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes checkpoints and exports (TF's chief rule).

    The chief is task ``chief``, or worker 0 when the cluster has no ``chief`` task; every
    single-process strategy is its own chief.
    """
    task_type, task_id = worker_task(strategy)
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def strategy_label(strategy: tf.distribute.Strategy) -> str:
    """Class name for logs and the model card, e.g. ``"MirroredStrategy"``; default -> ``"DefaultStrategy"``."""
    if is_multi_worker(strategy):
        return "MultiWorkerMirroredStrategy"
    name = type(strategy).__name__
    return "DefaultStrategy" if name in ("_DefaultDistributionStrategy", "DefaultDistributionStrategy") else name


def cpu_supports_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU has bfloat16 matrix instructions (AVX512-BF16 or AMX-BF16; Linux flags)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        return False
    return False


def configure_precision(mixed_precision: bool) -> str:
    """Sets the global Keras dtype policy; returns its name.

    With ``mixed_precision``: ``mixed_float16`` on a GPU; ``mixed_bfloat16`` on a CPU with
    bfloat16 instructions (AVX512-BF16 / AMX, e.g. AMD Zen 4, Intel Sapphire Rapids), where
    oneDNN runs the convolutions faster (measured on Fashion-MNIST: docs/benchmarks.md); anywhere else it
    warns and keeps ``float32`` (emulated 16-bit math would be slower). Variables stay float32
    and zoo models keep their final softmax in float32; the exported model is float32
    (:func:`mnist_batch.training.export.inference_copy`).
    """
    import keras

    policy = "float32"
    if mixed_precision:
        if tf.config.list_physical_devices("GPU"):
            policy = "mixed_float16"
        elif cpu_supports_bf16():
            policy = "mixed_bfloat16"
        else:
            warnings.warn(
                "--mixed-precision needs a GPU or a CPU with bfloat16 instructions (AVX512-BF16 / AMX); "
                "none is visible, training in float32 instead",
                RuntimeWarning,
                stacklevel=2,
            )
    keras.mixed_precision.set_global_policy(policy)
    return policy
