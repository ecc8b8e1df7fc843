"""What the throughput callback (callbacks.throughput, on by default) costs per training step.

Bakes the template with its default answers and trains its default MLP on digits on the CPU,
in process, with the callback as configured. Two parts make its cost per step:

- its own work: the time inside the hooks it implements and inside its two markers around
  each batch fetch, clocked around each call (less the clock's own cost) and divided by the
  number of training steps; every ``every_n_steps`` steps this includes logging an interval.
  Counting the FLOPs of the first batch is reported apart: it happens once per run;
- Lightning's dispatch: Lightning calls every hook on every callback, implemented or not. It is
  clocked by calling the hooks of one training step through Lightning's own dispatcher, with
  one do-nothing callback against none.

Both are compared with the median step time of the same run (as the callback measures it). A
difference of two whole runs, with and without the callback, would be lost in the noise of a
shared machine (several percent); these parts are measured directly.

    python benchmarks/throughput_cost.py                 # 3 runs of 5 epochs on one thread, the median
    python benchmarks/throughput_cost.py --epochs 10 --repeats 5 --threads 0 --json cost.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]


def bake(into: Path) -> Path:
    from cookiecutter.main import cookiecutter

    return Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(into)))


def measure(project: Path, epochs: int, threads: int) -> dict:
    """One training run in this process (started inside the baked project): the callback's cost per step."""
    import torch

    torch.set_num_threads(threads)
    sys.path[:0] = [str(project), str(project / "src")]
    os.environ["PROJECT_ROOT"] = str(project)
    import train as train_script  # the baked entry point; it registers the config resolvers
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    package = json.loads((project / ".cookiecutter.json").read_text())["package_name"]
    components = __import__(f"{package}.harness.components", fromlist=["build_callbacks"])
    throughput_module = __import__(f"{package}.harness.callbacks.throughput", fromlist=["TrainingThroughput"])

    calls: dict[str, list[float]] = {}
    found = {}

    def clocked(name, function):
        durations = calls.setdefault(name, [])

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                durations.append(time.perf_counter() - started)

        return timed

    build_callbacks = components.build_callbacks

    def build_clocked(*args, **kwargs):
        callbacks = build_callbacks(*args, **kwargs)
        for callback in callbacks:
            if isinstance(callback, throughput_module.TrainingThroughput):
                found["callback"] = callback
                implemented = ["on_train_batch_start", "on_train_batch_end", "on_train_epoch_start"]
                for hook in [*implemented, "on_validation_start", "on_train_end"]:
                    setattr(callback, hook, clocked(hook, getattr(callback, hook)))
                setup = callback.setup

                def setup_then_clock_markers(trainer, *args, setup=setup, **kwargs):
                    setup(trainer, *args, **kwargs)
                    trainer.profiler.start = clocked("fetch marker", trainer.profiler.start)
                    trainer.profiler.stop = clocked("fetch marker", trainer.profiler.stop)
                    found["trainer"] = trainer

                callback.setup = setup_then_clock_markers
        return callbacks

    components.build_callbacks = build_clocked  # train() imports it from there when it runs
    with tempfile.TemporaryDirectory() as logs, initialize_config_dir(str(project / "configs"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"paths.log_dir={logs}",
                "trainer.accelerator=cpu",
                f"trainer.max_epochs={epochs}",
                "callbacks.progress_bar=null",
                "test=false",
            ],
        )
        with open_dict(cfg):
            cfg.paths.output_dir = str(Path(logs) / "run")
        train_script.train(cfg)
        steps = json.loads((Path(logs) / "run" / "summary.json").read_text())["global_step"]
    callback, trainer = found["callback"], found["trainer"]
    # The first batch's hooks count its FLOPs, once per run: not a cost per step.
    once = calls["on_train_batch_start"].pop(0) + calls["on_train_batch_end"].pop(0)
    clock = clock_cost()
    work = sum(sum(durations) - clock * len(durations) for durations in calls.values())
    return {
        "steps": steps,
        "step_time_us": 1000 * callback.summary()["step_time_ms"],
        "work_us": 1e6 * work / steps,
        "dispatch_us": dispatch_per_step(trainer),
        "flop_count_once_ms": 1000 * (once - 2 * clock),
        "every_n_steps": callback.every_n_steps,
    }


def clock_cost(repeats: int = 100000) -> float:
    """The time the clock around each call adds to it, in seconds: subtracted from what it measured."""
    total = 0.0

    def nothing():
        return None

    for _ in range(repeats):
        started = time.perf_counter()
        try:
            nothing()
        finally:
            total += time.perf_counter() - started
    return total / repeats


def dispatch_per_step(trainer, repeats: int = 20000) -> float:
    """Lightning's cost of calling one more (do-nothing) callback through the hooks of one training step, in µs."""
    from pytorch_lightning import Callback
    from pytorch_lightning.trainer import call

    # The callback hooks of one training step (automatic optimization), in Lightning's order.
    per_step = {
        "on_train_batch_start": (None, 0),
        "on_before_backward": (None,),
        "on_after_backward": (),
        "on_before_optimizer_step": (None,),
        "on_before_zero_grad": (None,),
        "on_train_batch_end": (None, None, 0),
    }

    def one_step_of_hooks() -> float:
        started = time.perf_counter()
        for _ in range(repeats):
            for hook, args in per_step.items():
                call._call_callback_hooks(trainer, hook, *args)
        return (time.perf_counter() - started) / repeats

    saved = trainer.callbacks
    try:
        trainer.callbacks = []
        without = min(one_step_of_hooks() for _ in range(3))
        trainer.callbacks = [Callback()]
        with_one = min(one_step_of_hooks() for _ in range(3))
    finally:
        trainer.callbacks = saved
    return 1e6 * max(0.0, with_one - without)


def torch_default_threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    # One thread: on a shared machine, torch's threads wait for each other and step times scatter widely.
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: one run in a baked project
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.epochs, args.threads or torch_default_threads())))
        return

    with tempfile.TemporaryDirectory() as scratch:
        project = bake(Path(scratch))
        runs = []
        for _ in range(args.repeats):
            # A fresh process per run, inside the baked project, as train.py runs.
            done = subprocess.run(
                [sys.executable, __file__, "--measure", str(project), "--epochs", str(args.epochs)]
                + ["--threads", str(args.threads)],
                cwd=project,
                capture_output=True,
                text=True,
                check=True,
            )
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    for run in runs:
        run["cost_us"] = run["work_us"] + run["dispatch_us"]
        run["cost_fraction"] = run["cost_us"] / run["step_time_us"]
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"load average: {load}, torch threads: {args.threads or 'default'}")
    print(
        "| run | steps | MLP step (µs) | callback work (µs/step) | Lightning dispatch (µs/step) | cost of the step "
        "| FLOP count, once (ms) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, run in [*((str(i + 1), run) for i, run in enumerate(runs)), ("median", median)]:
        print(
            f"| {name} | {run['steps']:.0f} | {run['step_time_us']:.0f} | {run['work_us']:.2f} | "
            f"{run['dispatch_us']:.2f} | {100 * run['cost_fraction']:.2f}% | {run['flop_count_once_ms']:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "median": median}, indent=2))


if __name__ == "__main__":
    main()
