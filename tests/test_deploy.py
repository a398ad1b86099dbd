"""deploy/: pinned versions agree with requirements.txt, the Dockerfiles follow Beam's custom-container
recipe, the flex-template parameters, launch script, Airflow DAG, CronJob and crontab only use
options the command line accepts, and run_scheduled.sh locks, fails and logs as documented.
"""

from __future__ import annotations

import ast
import fcntl
import fnmatch
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest
import yaml

import mnist_batch
from mnist_batch.errors import MnistBatchError
from mnist_batch.runstore.run_ids import check_run_id
from mnist_batch.scoring.options import add_arguments, check_beam_args, run_options_from_args

import scoring_fixtures

tiny_model = scoring_fixtures.tiny_litert_model  # the CLI scores it without TensorFlow
sample_data = scoring_fixtures.sample_data
REPO = pathlib.Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
DOCKER_INSTRUCTIONS = {"FROM", "ARG", "ENV", "WORKDIR", "COPY", "RUN", "ENTRYPOINT", "CMD", "LABEL", "USER"}


def score_parser():
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser


def parse_score_args(argv: list[str]):
    """Parses like ``pipelines/score.py``: own options, the rest checked as Beam options."""
    parser = score_parser()
    args, beam_args = parser.parse_known_args(argv)
    check_beam_args(beam_args)
    return args, beam_args


def read_env_file(path: pathlib.Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def dockerfile_instructions(path: pathlib.Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            keyword, _, rest = pending.strip().partition(" ")
            out.append((keyword, rest.strip()))
            pending = ""
    assert not pending, f"{path.name}: dangling continuation"
    return out


# --- versions and images ---------------------------------------------------------------------


def test_pinned_versions_match_requirements_and_the_installed_stack():
    versions = read_env_file(DEPLOY / "versions.env")
    requirements = {}
    for line in (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, _, spec = line.partition("==")
            requirements[name.strip()] = spec.strip()
    assert fnmatch.fnmatch(versions["BEAM_VERSION"], requirements["apache-beam"]), (versions, requirements)
    assert fnmatch.fnmatch(versions["TENSORFLOW_VERSION"], requirements["tensorflow"]), (versions, requirements)
    assert re.fullmatch(r"\d+\.\d+\.\d+", versions["BEAM_VERSION"]), "pin an exact Beam image tag"
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == versions["PYTHON_VERSION"]
    assert f'python_requires=">={versions["PYTHON_VERSION"]}' in (REPO / "setup.py").read_text(encoding="utf-8")
    assert "python" + versions["PYTHON_VERSION"].replace(".", "") in versions["FLEX_LAUNCHER_IMAGE"]
    import apache_beam

    assert apache_beam.__version__ == versions["BEAM_VERSION"]


@pytest.mark.parametrize("name,extras", [("Dockerfile", "gcp"), ("Dockerfile.gpu", "gcp,gpu")])
def test_dockerfiles_follow_the_beam_custom_container_recipe(name, extras):
    versions = read_env_file(DEPLOY / "versions.env")
    instructions = dockerfile_instructions(DEPLOY / name)
    assert {k for k, _ in instructions} <= DOCKER_INSTRUCTIONS, instructions
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    for key in ("PYTHON_VERSION", "BEAM_VERSION", "FLEX_LAUNCHER_IMAGE"):
        assert args[key] == versions[key], (name, key)  # ARG defaults = deploy/versions.env
    assert args["PIP_EXTRAS"] == extras
    froms = [a for k, a in instructions if k == "FROM"]
    assert froms == [
        "apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION} AS beam_sdk",
        "${FLEX_LAUNCHER_IMAGE} AS flex_launcher",
        "python:${PYTHON_VERSION}-slim",
    ]
    copies = [a for k, a in instructions if k == "COPY"]
    assert "--from=beam_sdk /opt/apache/beam /opt/apache/beam" in copies
    for source in (c.split()[:-1] for c in copies if not c.startswith("--from")):
        for item in source:
            assert (REPO / item).exists(), f"{name}: COPY {item} is not in the repository"
    runs = " ".join(a for k, a in instructions if k == "RUN")
    assert "pip wheel --no-deps -w /tmp/wheel ." in runs  # the package as a wheel, by the workers' one install script
    assert 'EXTRAS="${PIP_EXTRAS}" deploy/worker/install.sh /tmp/wheel/mnist_batch-*.whl' in runs
    assert instructions[-1] == ("ENTRYPOINT", '["/opt/apache/beam/boot"]')
    env = " ".join(a for k, a in instructions if k == "ENV")
    flex_file = re.search(r"FLEX_TEMPLATE_PYTHON_PY_FILE=/app/(\S+)", env).group(1)
    assert (REPO / flex_file).is_file()
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".venv" in ignored and ".git" in ignored


# --- Dataflow ----------------------------------------------------------------------------------


def load_flex_main():
    import importlib.util

    spec = importlib.util.spec_from_file_location("flex_main", DEPLOY / "dataflow" / "flex_main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flex_template_parameters_are_cli_options():
    metadata = json.loads((DEPLOY / "dataflow" / "metadata.json").read_text(encoding="utf-8"))
    flex_main = load_flex_main()
    actions = flex_main.flag_actions(flex_main.build_parser()[1])
    names = [p["name"] for p in metadata["parameters"]]
    assert len(names) == len(set(names)) and metadata["name"] and metadata["description"]
    for parameter in metadata["parameters"]:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", parameter["name"]), parameter["name"]
        assert parameter["name"] in actions, f"{parameter['name']} is not an option of mnist-batch score"
        assert parameter["isOptional"] == (not actions[parameter["name"]].required), parameter["name"]
        assert parameter["label"] and parameter["helpText"]
        for regex in parameter.get("regexes", []):
            re.compile(regex)
    assert {"model", "input", "output", "incremental", "run_id", "run_date", "expect_model_id"} <= set(names)
    regexes = {p["name"]: re.compile(p["regexes"][0]) for p in metadata["parameters"] if p.get("regexes")}
    examples = {"model": "gs://b/m/cnn.keras", "run_id": "d20260101", "run_date": "2026-01-01", "incremental": "true"}
    examples |= {"incremental_key": "hash", "expect_model_id": "0123abcd", "review_threshold": "0.9", "replace": "true"}
    examples |= {"max_error_rate": "0.05", "max_batch_size": "256", "max_pixels": "40000000"}
    examples |= {"max_file_bytes": "67108864"}
    for name, regex in regexes.items():
        assert regex.fullmatch(examples.get(name, "gs://b/x")), (name, examples.get(name))


def test_flex_main_translates_template_parameters():
    flex_main = load_flex_main()
    argv = [
        "--model=gs://b/m/cnn.keras",
        "--input=gs://b/scans/",
        "--output=gs://b/scored",
        "--run_id=d20260101",
        "--run_date=2026-01-01",
        "--incremental=true",
        "--incremental_key=hash",
        "--expect_model_id=0123abcd",
        "--runner=DataflowRunner",
        "--project=p",
        "--sdk_container_image=img",
    ]
    translated = flex_main.translate(argv)
    assert (
        "--incremental" in translated and "--run-id=d20260101" in translated and "--runner=DataflowRunner" in translated
    )
    args, beam_args = parse_score_args(translated)
    args.layout = "runs"
    options = run_options_from_args(args)
    assert (args.run_id, args.input, args.output) == ("d20260101", ["gs://b/scans/"], "gs://b/scored")
    assert options.incremental and options.incremental_key == "hash" and options.run_date == "2026-01-01"
    assert options.expect_model_id == "0123abcd"
    assert beam_args == ["--runner=DataflowRunner", "--project=p", "--sdk_container_image=img"]
    assert "--incremental" not in flex_main.translate(["--incremental=false"])
    with pytest.raises(MnistBatchError, match="expected true or false"):
        flex_main.translate(["--incremental=maybe"])


def dry_run(mode: str, **env) -> list[str]:
    settings = {"PROJECT": "p", "REGION": "europe-west1", "BUCKET": "b", "MODEL": "gs://b/m/cnn.keras"}
    settings |= {"INPUT": "gs://b/scans/", "OUTPUT": "gs://b/scored", "IMAGE": "img:1", "RUN_ID": "d20260101"}
    proc = subprocess.run(
        ["bash", str(DEPLOY / "dataflow" / "launch.sh"), mode],
        env=dict(os.environ, DRY_RUN="1", **settings, **env),
        capture_output=True,
        text=True,
        check=True,
    )
    return shlex.split(proc.stdout)


def test_dataflow_launch_script_classic_and_flex():
    classic = dry_run("classic", EXPECT_MODEL_ID="0123abcd")
    assert classic[:2] == ["python", "pipelines/score.py"]
    args, beam_args = parse_score_args(classic[2:])
    assert args.layout == "runs" and args.incremental and args.run_id == "d20260101" and args.expect_model_id
    assert beam_args[beam_args.index("--setup_file") + 1] == "./setup.py"
    assert beam_args[beam_args.index("--runner") + 1] == "DataflowRunner"
    flex = dry_run("flex-run")
    assert flex[:4] == ["gcloud", "dataflow", "flex-template", "run"]
    params = dict(p.split("=", 1) for p in flex[flex.index("--parameters") + 1].split(","))
    metadata = json.loads((DEPLOY / "dataflow" / "metadata.json").read_text(encoding="utf-8"))
    assert set(params) - {p["name"] for p in metadata["parameters"]} == {"sdk_container_image"}
    build = dry_run("flex-build")
    assert build[build.index("--metadata-file") + 1] == str(DEPLOY / "dataflow" / "metadata.json")
    assert subprocess.run(["bash", str(DEPLOY / "dataflow" / "launch.sh"), "nope"], capture_output=True).returncode


# --- Airflow -----------------------------------------------------------------------------------


def airflow_to_args(options: dict) -> list[str]:
    """What the Beam provider's ``beam_options_to_args`` makes of ``pipeline_options``."""
    args = []
    for key, value in options.items():
        if value is None or value is True:
            args.append(f"--{key}")
        elif value is not False:
            args.append(f"--{key}={value}")
    return args


def test_airflow_dag_runs_the_cli_daily_and_incrementally():
    path = DEPLOY / "airflow" / "mnist_batch_score_dag.py"
    try:
        import airflow
    except ImportError:
        airflow = None
    if airflow is not None:  # pragma: no cover - Airflow is not installed here
        import importlib.util

        spec = importlib.util.spec_from_file_location("dag_module", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.dag.dag_id == "mnist_batch_score"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = {
        node.func.id: node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    dag = {k.arg: k.value for k in calls["DAG"].keywords}
    assert ast.literal_eval(dag["schedule"]) == "@daily" and ast.literal_eval(dag["max_active_runs"]) == 1
    operator = {k.arg: k.value for k in calls["BeamRunPythonPipelineOperator"].keywords}
    options_node = operator["pipeline_options"]
    options = {
        ast.literal_eval(k): (ast.literal_eval(v) if isinstance(v, ast.Constant) else "/repo/setup.py")
        for k, v in zip(options_node.keys, options_node.values, strict=True)
    }
    assert options["incremental"] is True and options["layout"] == "runs"
    assert options["run-id"] == "d{{ ds_nodash }}-try{{ ti.try_number }}" and options["run-date"] == "{{ ds }}"
    samples = {"d{{ ds_nodash }}-try{{ ti.try_number }}": "d20260101-try1", "{{ ds }}": "2026-01-01"}
    rendered = {}
    for key, value in options.items():
        if isinstance(value, str) and "{{" in value:
            value = samples.get(value, "0123abcd" if key == "expect-model-id" else "rendered")
        rendered[key] = value
    args, beam_args = parse_score_args(airflow_to_args(rendered))
    assert args.incremental and args.run_id == "d20260101-try1" and args.run_date == "2026-01-01"
    assert check_run_id(args.run_id) == "d20260101-try1"
    assert run_options_from_args(args).incremental and args.expect_model_id == "0123abcd"
    assert any(a.startswith("--setup_file=") for a in beam_args)
    assert '"pipelines", "score.py"' in path.read_text(encoding="utf-8")  # the launcher runs pipelines/score.py


def test_airflow_dag_monitors_after_scoring():
    from mnist_batch.cli import build_parser
    from mnist_batch.monitoring.checks import parse_fail_on

    source = (DEPLOY / "airflow" / "mnist_batch_score_dag.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    calls = {
        node.func.id: node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    operator = {k.arg: k.value for k in calls["BashOperator"].keywords}
    assert ast.literal_eval(operator["task_id"]) == "monitor" and ast.literal_eval(operator["retries"]) == 0
    command = ast.literal_eval(operator["bash_command"])
    samples = {"mnist_batch_output": "gs://b/scored", "mnist_batch_monitor_dir": "/srv/monitor"}

    def render(match: re.Match) -> str:
        expr = match.group(1).strip()
        default = re.search(r"get\('(\w+)', '([^']*)'\)", expr)
        return default.group(2) if default else samples[expr.rsplit(".", 1)[1]]

    argv = shlex.split(re.sub(r"\{\{(.*?)\}\}", render, command))
    assert argv[:2] == ["mnist-batch", "monitor"]
    args = build_parser().parse_args(argv[1:])
    assert (args.root, args.output) == ("gs://b/scored", "/srv/monitor")
    assert parse_fail_on(args.fail_on) == ("class_mix", "confidence", "errors", "low_confidence")
    edges = [
        (n.left.id, n.right.id)
        for n in ast.walk(tree)
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.RShift) and isinstance(n.left, ast.Name)
    ]
    assert edges == [("score", "monitor")]  # monitor runs only after a successful score


# --- Kubernetes and cron -------------------------------------------------------------------------


def wrapper_variables() -> set[str]:
    return set(re.findall(r"\$\{(MNIST_BATCH_[A-Z_]+)", (DEPLOY / "run_scheduled.sh").read_text(encoding="utf-8")))


def test_kubernetes_cronjob_and_crontab_run_the_wrapper():
    manifest = yaml.safe_load((DEPLOY / "kubernetes" / "cronjob.yaml").read_text(encoding="utf-8"))
    assert (manifest["apiVersion"], manifest["kind"]) == ("batch/v1", "CronJob")
    spec = manifest["spec"]
    assert spec["concurrencyPolicy"] == "Forbid" and len(spec["schedule"].split()) == 5
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["command"] == ["bash", "/app/deploy/run_scheduled.sh"]  # COPY deploy ./deploy in /app
    env = {e["name"] for e in container["env"]}
    assert {"MNIST_BATCH_MODEL", "MNIST_BATCH_INPUT", "MNIST_BATCH_OUTPUT"} <= env <= wrapper_variables()
    assert "MNIST_BATCH_MONITOR_DIR" in env  # the nightly pair: score, then monitor
    parse_score_args(["--model", "m.keras", "--input", "x", "--output", "o", *container["args"]])
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert mounts == {v["name"] for v in pod["volumes"]}

    lines = [
        line
        for line in (DEPLOY / "cron" / "crontab").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#") and not re.match(r"^[A-Z_]+=", line)
    ]
    (line,) = lines
    fields = line.split(None, 5)
    assert fields[:5] == spec["schedule"].split()  # the same time as the CronJob
    command = shlex.split(fields[5])
    assert "deploy/run_scheduled.sh" in command
    assignments = {w.split("=", 1)[0] for w in command if re.match(r"^MNIST_BATCH_[A-Z_]+=", w)}
    assert {"MNIST_BATCH_MODEL", "MNIST_BATCH_INPUT", "MNIST_BATCH_OUTPUT"} <= assignments <= wrapper_variables()
    assert "MNIST_BATCH_MONITOR_DIR" in assignments


# --- run_scheduled.sh ----------------------------------------------------------------------------


def fake_scorer(tmp_path: pathlib.Path, code: int) -> pathlib.Path:
    script = tmp_path / f"fake_{code}.sh"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'printf "%s\\n" "$@" > "{tmp_path}/args.txt"\n'
        "echo 'mnist-batch score: worker 1 scored 3 images'\n"
        f"echo 'scored 3 of {3 + code} images (0 errors, 0 skipped, 1 low confidence, 0 blank) in 1.0 s on DirectRunner'\n"
        f"exit {code}\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script


def run_wrapper(tmp_path: pathlib.Path, command: str, *extra: str, **env) -> subprocess.CompletedProcess:
    settings = {"MNIST_BATCH_MODEL": "m.keras", "MNIST_BATCH_INPUT": "in", "MNIST_BATCH_OUTPUT": "out"}
    settings |= {
        "MNIST_BATCH_CMD": command,
        "MNIST_BATCH_LOCK": str(tmp_path / "lock"),
        "MNIST_BATCH_LOG_DIR": str(tmp_path),
    }
    return subprocess.run(
        ["bash", str(DEPLOY / "run_scheduled.sh"), *extra],
        env={**os.environ, **settings, **env},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def test_run_scheduled_logs_the_summary_and_returns_the_exit_code(tmp_path):
    ok = run_wrapper(tmp_path, str(fake_scorer(tmp_path, 0)), "--runner", "DirectRunner", MNIST_BATCH_RUN_ID="r1")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert re.search(r"Z mnist-batch run r1: ok: scored 3 of 3 images .* \(log: .*score-r1\.log\)", ok.stdout)
    passed = (tmp_path / "args.txt").read_text(encoding="utf-8").split("\n")
    assert passed[:10] == [
        "score",
        "--model",
        "m.keras",
        "--input",
        "in",
        "--output",
        "out",
        "--layout",
        "runs",
        "--incremental",
    ]
    assert passed[passed.index("--run-id") + 1] == "r1" and passed[-3:-1] == ["--runner", "DirectRunner"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", passed[passed.index("--run-date") + 1])
    parse_score_args(passed[1:-1])
    failed = run_wrapper(tmp_path, str(fake_scorer(tmp_path, 4)))
    assert failed.returncode == 4 and "FAILED with exit 4: scored 3 of 7 images" in failed.stdout
    default_id = re.search(r"mnist-batch run (\S+):", failed.stdout).group(1)
    assert re.fullmatch(r"r\d{8}T\d{6}Z-[0-9a-f]{8}", default_id) and check_run_id(default_id) == default_id


def fake_cli(tmp_path: pathlib.Path, score_code: int, monitor_code: int, status: str = "alert") -> pathlib.Path:
    """A stand-in ``mnist-batch``: ``score`` as :func:`fake_scorer`, ``monitor`` records its args and
    reports the latest run as ``status`` (with a volume alert line when not ok)."""
    script = tmp_path / f"fake_cli_{score_code}_{monitor_code}_{status}.sh"
    alert_line = "  echo '  alert: volume: 3 files scored vs 2,000 in the reference'\n" if status != "ok" else ""
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'printf "%s\\n" "$@" > "{tmp_path}/$1-args.txt"\n'
        'if [ "$1" = monitor ]; then\n'
        f"  echo 'latest run r1 (dt=2026-01-01): {status}'\n"
        f"{alert_line}"
        f"  if [ {monitor_code} -eq 5 ]; then\n"
        "    echo 'mnist-batch monitor: FAILED class_mix: run r1 (dt=2026-01-01): predicted class mix PSI 0.412' >&2\n"
        "    echo 'mnist-batch monitor: FAILED errors: run r1 (dt=2026-01-01): error rate 9.0% vs 0.0%' >&2\n"
        "  fi\n"
        f"  exit {monitor_code}\n"
        "fi\n"
        f"echo 'scored 3 of 3 images (0 errors, 0 skipped, 1 low confidence, 0 blank) in 1.0 s on DirectRunner'\n"
        f"exit {score_code}\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script


def test_run_scheduled_monitors_after_a_successful_score(tmp_path):
    monitor_dir = str(tmp_path / "monitor")
    flagged = run_wrapper(
        tmp_path, str(fake_cli(tmp_path, 0, 5)), MNIST_BATCH_RUN_ID="r1", MNIST_BATCH_MONITOR_DIR=monitor_dir
    )
    assert flagged.returncode == 5, flagged.stdout + flagged.stderr
    monitor_args = (tmp_path / "monitor-args.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert monitor_args == ["monitor", "out", "--output", monitor_dir, "--fail-on", "drift,errors,low_confidence"]
    lines = [line for line in flagged.stdout.splitlines() if "monitor FLAGGED: " in line]
    assert len(lines) == 2 and "class_mix: run r1 (dt=2026-01-01): predicted class mix PSI 0.412" in lines[0]
    assert "monitor FLAGGED the run (exit 5; page: " in flagged.stdout
    assert (tmp_path / "monitor-r1.log").is_file()
    ok = run_wrapper(
        tmp_path,
        str(fake_cli(tmp_path, 0, 0, status="ok")),
        MNIST_BATCH_RUN_ID="r2",
        MNIST_BATCH_MONITOR_DIR=monitor_dir,
        MNIST_BATCH_MONITOR_FAIL_ON="all",
        MNIST_BATCH_METRICS_FILE="/var/lib/node_exporter/textfile/mnist_batch.prom",
    )
    args = (tmp_path / "monitor-args.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert args[-2:] == ["--metrics-file", "/var/lib/node_exporter/textfile/mnist_batch.prom"]
    assert ok.returncode == 0 and "monitor ok: latest run r1 (dt=2026-01-01): ok (page: " in ok.stdout, ok.stdout
    assert args[args.index("--fail-on") + 1] == "all"
    # Flagged only on a check outside --fail-on: the night passes, and the log says so (never 'monitor ok').
    noted = run_wrapper(
        tmp_path, str(fake_cli(tmp_path, 0, 0)), MNIST_BATCH_RUN_ID="r3", MNIST_BATCH_MONITOR_DIR=monitor_dir
    )
    assert noted.returncode == 0 and "monitor ok" not in noted.stdout, noted.stdout
    assert "monitor noted (not in --fail-on drift,errors,low_confidence): alert: volume: 3 files" in noted.stdout
    assert "monitor passed --fail-on drift,errors,low_confidence; latest run r1 (dt=2026-01-01): alert" in noted.stdout
    (tmp_path / "monitor-args.txt").unlink()
    failed = run_wrapper(tmp_path, str(fake_cli(tmp_path, 4, 0)), MNIST_BATCH_MONITOR_DIR=monitor_dir)
    assert failed.returncode == 4 and not (tmp_path / "monitor-args.txt").exists()  # no monitor after a failed score


def test_run_scheduled_refuses_to_overlap(tmp_path):
    marker = tmp_path / "args.txt"
    with open(tmp_path / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run is in progress
        blocked = run_wrapper(tmp_path, str(fake_scorer(tmp_path, 0)))
    assert blocked.returncode == 75 and "another run holds" in blocked.stdout
    assert not marker.exists()  # nothing was started
    assert run_wrapper(tmp_path, str(fake_scorer(tmp_path, 0))).returncode == 0  # lock released: runs again


@pytest.mark.slow
def test_run_scheduled_real_tiny_run(tmp_path, sample_data, tiny_model):
    from PIL import Image

    test = sample_data.split("test")
    for i in range(6):
        (tmp_path / "in" / str(test.labels[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i]).save(tmp_path / "in" / str(test.labels[i]) / f"{i}.png")
    env = {"MNIST_BATCH_MODEL": str(tiny_model), "MNIST_BATCH_INPUT": str(tmp_path / "in")}
    env |= {"MNIST_BATCH_OUTPUT": str(tmp_path / "root"), "MNIST_BATCH_RUN_ID": "nightly", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env |= {"MNIST_BATCH_MONITOR_DIR": str(tmp_path / "monitor")}
    proc = run_wrapper(tmp_path, f"{sys.executable} -m mnist_batch", **env)
    assert proc.returncode == 0, proc.stdout + (tmp_path / "score-nightly.log").read_text(encoding="utf-8")[-2000:]
    assert "ok: scored 6 of 6 images" in proc.stdout
    assert "monitor ok: latest run nightly" in proc.stdout, proc.stdout
    assert (tmp_path / "monitor" / "monitor.html").is_file() and (tmp_path / "monitor" / "runs.parquet").is_file()
    (success,) = (tmp_path / "root").glob("_runs/dt=*/run=nightly/_SUCCESS")
    assert json.loads(success.read_text(encoding="utf-8"))["incremental"]["enabled"] is True


def test_beam_spellings_pass_and_beam_labels_are_not_labels_csv():
    """Beam options spelled unlike their fields pass the typo check; --labels is Dataflow's, not --labels-csv."""
    from mnist_batch.cli import build_parser

    beam = ["--labels=team=ml", "--experiment=use_runner_v2", "--no_use_public_ips", "--dataflow_service_option=x"]
    base = ["--model", "m.keras", "--input", "x", "--output", "o"]
    args, extra = build_parser().parse_known_args(["score", *base, *beam])
    assert args.labels_csv is None and extra == beam and args.passes_unknown_args
    flex, _ = load_flex_main().build_parser()
    flex_args, flex_beam = flex.parse_known_args([*base, *beam])
    assert flex_args.labels_csv is None and flex_beam == beam
    check_beam_args(extra)  # all four are Beam's
    with pytest.raises(MnistBatchError, match="unknown option --temp_locaton"):
        check_beam_args(["--temp_locaton=gs://b/tmp"])
    # A job server (Flink's, Spark's) reads options of its own that Python's Beam does not know:
    # Beam's spelling goes to it unchecked (and is named), ours is still checked.
    portable = ["--runner", "PortableRunner", "--job_endpoint", "localhost:8099"]
    assert check_beam_args([*portable, "--max_bundle_size=10000", "--parallelism=2"]) == ["--max_bundle_size"]
    with pytest.raises(MnistBatchError, match=r"unknown option --max-batch-sise \(did you mean --max-batch-size\?\)"):
        check_beam_args([*portable, "--max-batch-sise=10"])
    with pytest.raises(MnistBatchError, match="unknown option --max_bundle_size"):
        check_beam_args(["--runner", "DirectRunner", "--max_bundle_size=10000"])


# --- Kubernetes API schema ------------------------------------------------------------------------

KUBERNETES_VALIDATE = "kubernetes-validate==1.37.0"  # PyPI; bundles the JSON schemas of Kubernetes 1.25-1.37
KUBERNETES_VERSION = "1.37.0"  # the newest release whose schemas it bundles
VALIDATOR_DIR = REPO / ".cache" / "kubernetes-validate-1.37.0"  # git-ignored; not a runtime dependency


def kubernetes_validate(*argv: str) -> subprocess.CompletedProcess:
    """Runs kubernetes-validate, installing it (pip --target, ~22 MB) into VALIDATOR_DIR the first time."""
    if not (VALIDATOR_DIR / "kubernetes_validate").is_dir():
        pip = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(VALIDATOR_DIR), KUBERNETES_VALIDATE],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if pip.returncode != 0:
            pytest.skip(f"cannot install {KUBERNETES_VALIDATE} from PyPI: {(pip.stderr or pip.stdout).strip()[-300:]}")
    env = {**os.environ, "PYTHONPATH": str(VALIDATOR_DIR)}
    return subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--kubernetes-version", KUBERNETES_VERSION, "--strict", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_kubernetes_cronjob_validates_against_the_api_schema(tmp_path):
    """The CronJob against Kubernetes 1.37's API schema (strict: unknown fields fail), and a broken copy fails."""
    manifest = DEPLOY / "kubernetes" / "cronjob.yaml"
    done = kubernetes_validate(str(manifest))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed for resource cronjob/mnist-batch-score against version 1.37" in done.stdout, done.stdout
    text = manifest.read_text(encoding="utf-8")
    for name, (broken, reason) in {
        "misspelt": (
            text.replace("concurrencyPolicy:", "concurrencyPolicyy:"),
            "spec: Additional properties are not allowed ('concurrencyPolicyy' was unexpected)",
        ),
        "wrong_type": (
            text.replace("backoffLimit: 2", "backoffLimit: two"),
            "spec.jobTemplate.spec.backoffLimit: 'two' is not of type 'integer'",
        ),
        "misplaced": (
            text.replace("restartPolicy: Never", "restartPolicy: Never\n          command: [bash]"),
            "spec.jobTemplate.spec.template.spec: Additional properties are not allowed ('command' was unexpected)",
        ),
    }.items():
        assert broken != text
        path = tmp_path / f"{name}.yaml"
        path.write_text(broken, encoding="utf-8")
        refused = kubernetes_validate(str(path))
        assert refused.returncode != 0 and reason in refused.stdout, f"{name}: {refused.stdout}{refused.stderr}"


def test_the_flink_taskmanagers_run_the_worker_pool_as_a_sidecar_from_the_project_image():
    """deploy/kubernetes/flink-taskmanager.yaml: valid against the API schema; each pod a TaskManager and
    Beam's worker pool from the project's image (the package installed from its wheel), with the bucket
    credentials as that container's AWS_* variables from a Secret (never on the command line)."""
    manifest = DEPLOY / "kubernetes" / "flink-taskmanager.yaml"
    done = kubernetes_validate(str(manifest))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed for resource deployment/mnist-batch-flink-taskmanager against version 1.37" in done.stdout
    pod = yaml.safe_load(manifest.read_text(encoding="utf-8"))["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    pool = containers["beam-worker-pool"]
    assert pool["command"] == ["python", "-m", "apache_beam.runners.worker.worker_pool_main", "--service_port=50000"]
    assert pool["image"].endswith(f"mnist-batch:{mnist_batch.__version__}")  # the launcher's version
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in pool["env"] if "valueFrom" in e}
    assert secrets == {"AWS_ACCESS_KEY_ID": "mnist-batch-bucket", "AWS_SECRET_ACCESS_KEY": "mnist-batch-bucket"}
    assert containers["taskmanager"]["image"].startswith("flink:1.19")


def _jar(path: pathlib.Path, entries: dict[str, bytes]) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)


def test_one_jar_merges_the_job_server_classpath_as_a_shading_plugin_would(tmp_path):
    """deploy/flink/one_jar.py (cluster.sh's job server classpath, one blob per job): in name order the
    first class wins, every service provider is kept, signatures and old manifests are dropped."""
    import zipfile

    lib = tmp_path / "lib"
    lib.mkdir()
    _jar(lib / "a-1.0.jar", {
        "META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\nMain-Class: a.X\n",
        "META-INF/A.SF": b"signature", "META-INF/A.RSA": b"key",
        "a/X.class": b"from a", "META-INF/services/org.example.Spi": b"impl.FromA\n",
    })  # fmt: skip
    _jar(lib / "b-2.0.jar", {
        "a/X.class": b"from b", "b/Y.class": b"y", "META-INF/versions/11/b/Y.class": b"y11",
        "META-INF/services/org.example.Spi": b"impl.FromB", "META-INF/INDEX.LIST": b"index",
    })  # fmt: skip
    (lib / "notes.txt").write_text("not a jar")
    out = tmp_path / "jobserver.jar"
    run = subprocess.run(
        [sys.executable, str(DEPLOY / "flink" / "one_jar.py"), str(lib), str(out)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert "2 jars ->" in run.stdout
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        assert z.read("a/X.class") == b"from a"
        assert z.read("b/Y.class") == b"y" and z.read("META-INF/versions/11/b/Y.class") == b"y11"
        assert z.read("META-INF/services/org.example.Spi").split() == [b"impl.FromA", b"impl.FromB"]
        assert not names & {"META-INF/A.SF", "META-INF/A.RSA", "META-INF/INDEX.LIST"}
        manifest = z.read("META-INF/MANIFEST.MF").decode()
        assert "Multi-Release: true" in manifest and "Main-Class" not in manifest
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []  # written through a rename

    empty = tmp_path / "empty"
    empty.mkdir()
    run = subprocess.run(
        [sys.executable, str(DEPLOY / "flink" / "one_jar.py"), str(empty), str(tmp_path / "x.jar")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "no jars in" in run.stderr
    assert not (tmp_path / "x.jar").exists()


def test_cluster_sh_starts_the_job_server_from_one_jar():
    """Every job ships the job server's classpath to Flink: cluster.sh must start it from the merged jar,
    remade when the resolved lib changes, not from the ~160 jars of its lib folder."""
    script = (DEPLOY / "flink" / "cluster.sh").read_text()
    start = next(line for line in script.splitlines() if "start jobserver java" in line)
    assert '-cp "$CACHE/jobserver.jar"' in start
    assert "jobserver-lib/*" not in start
    assert re.search(r"resolve jobserver\n\s+one_jar\n", script)
    assert 'one_jar.py" "$lib" "$jar"' in script and '.pom.sha256" "$jar.sha256"' in script
