"""Strategy selection, TF_CONFIG checks, invalid combinations and the precision policy."""

from __future__ import annotations

import json
import warnings

import pytest

tf = pytest.importorskip("tensorflow")

from mnist_batch.training.strategy import (  # noqa: E402
    StrategyChoice,
    configure_precision,
    is_chief,
    is_multi_worker,
    make_strategy,
    parse_tf_config,
    resolve_strategy,
    strategy_label,
)

TF_CONFIG = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}})


@pytest.mark.parametrize(
    ("name", "gpus", "allow_cpu", "expected"),
    [
        ("auto", 0, False, StrategyChoice("default")),
        ("auto", 1, False, StrategyChoice("one-device", ("/gpu:0",))),
        ("auto", 2, False, StrategyChoice("mirrored", ("/gpu:0", "/gpu:1"))),
        ("default", 2, False, StrategyChoice("default")),
        ("one-device", 1, False, StrategyChoice("one-device", ("/gpu:0",))),
        ("one-device", 0, True, StrategyChoice("one-device", ("/cpu:0",))),
        ("mirrored", 4, False, StrategyChoice("mirrored", ("/gpu:0", "/gpu:1", "/gpu:2", "/gpu:3"))),
        ("mirrored", 0, True, StrategyChoice("mirrored", ("/cpu:0",))),
    ],
)
def test_resolve_strategy(name, gpus, allow_cpu, expected):
    assert resolve_strategy(name, num_gpus=gpus, allow_cpu=allow_cpu) == expected


@pytest.mark.parametrize("name", ["mirrored", "one-device"])
def test_gpu_strategies_without_gpu_need_allow_cpu(name):
    with pytest.raises(ValueError, match=rf"strategy '{name}' needs a GPU.*--allow-cpu"):
        resolve_strategy(name, num_gpus=0)


def test_unknown_strategy_and_bad_tf_config():
    with pytest.raises(ValueError, match="strategy must be one of"):
        resolve_strategy("tpu", num_gpus=0)
    with pytest.raises(ValueError, match="needs the TF_CONFIG"):
        resolve_strategy("multi-worker", num_gpus=0, tf_config=None)
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_tf_config("{cluster")
    with pytest.raises(ValueError, match="no cluster.worker"):
        parse_tf_config(json.dumps({"cluster": {}, "task": {"type": "worker", "index": 0}}))
    with pytest.raises(ValueError, match="no task"):
        parse_tf_config(json.dumps({"cluster": {"worker": ["a:1"]}}))
    with pytest.raises(ValueError, match="not in the cluster"):
        parse_tf_config(json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}))
    assert resolve_strategy("multi-worker", num_gpus=0, tf_config=TF_CONFIG) == StrategyChoice("multi-worker")


def test_make_strategy_on_this_cpu_machine():
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("CPU-only expectations")
    default = make_strategy("auto")
    assert default is tf.distribute.get_strategy()
    assert strategy_label(default) == "DefaultStrategy" and is_chief(default) and not is_multi_worker(default)
    mirrored = make_strategy("mirrored", allow_cpu=True)
    assert isinstance(mirrored, tf.distribute.MirroredStrategy) and mirrored.num_replicas_in_sync == 1
    one = make_strategy("one-device", allow_cpu=True)
    assert strategy_label(one) == "OneDeviceStrategy"
    with pytest.raises(ValueError, match="needs a GPU"):
        make_strategy("mirrored")


def test_mixed_precision_warns_and_falls_back_on_cpu(monkeypatch):
    import keras

    from mnist_batch.training import strategy as strat

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("CPU-only expectation")
    monkeypatch.setattr(strat, "cpu_supports_bf16", lambda cpuinfo="/proc/cpuinfo": False)
    try:
        with pytest.warns(RuntimeWarning, match="needs a GPU or a CPU with bfloat16"):
            assert configure_precision(True) == "float32"
        assert keras.mixed_precision.global_policy().name == "float32"
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert configure_precision(False) == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")
