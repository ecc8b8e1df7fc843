"""What the throughput callback (callbacks.throughput, on by default) costs per training step.

Bakes the template with its default answers and trains its default MLP on digits on the CPU,
in process, with the callback as configured. Two parts make its cost per step:

- its own work: the time inside the hooks it implements, clocked around each call (less the
  clock's own cost) and divided by the number of training steps; every ``every_n_steps`` steps
  this includes logging an interval. Counting the FLOPs of the first batch is reported apart:
  it happens once per run;
- Lightning's dispatch: Lightning calls every hook on every callback, implemented or not. It is
  clocked by calling the hooks of one training step through Lightning's own dispatcher, with
  one do-nothing callback against none.

Both are compared with the median step time of the same run (as the callback measures it), in
wall-clock time and in CPU time of the training thread (on one torch thread, the step's work;
it varies less than wall time on a shared machine). A difference of two whole runs, with and
without the callback, would be lost in the noise of a shared machine (several percent); these
parts are measured directly.

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

    # Per clocked call: (wall seconds, CPU seconds of this thread).
    calls: dict[str, list[tuple[float, float]]] = {}
    # CPU time at the end of each training batch; None where validation or a new epoch breaks the sequence.
    batch_ends: list[float | None] = []
    found = {}

    def clocked(name, function):
        durations = calls.setdefault(name, [])

        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.thread_time()
            if name == "on_train_batch_end":
                batch_ends.append(cpu)
            elif name in ("on_validation_start", "on_train_epoch_start"):
                batch_ends.append(None)
            try:
                return function(*args, **kwargs)
            finally:
                durations.append((time.perf_counter() - wall, time.thread_time() - cpu))

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

                def setup_and_keep_trainer(trainer, *args, setup=setup, **kwargs):
                    setup(trainer, *args, **kwargs)
                    found["trainer"] = trainer

                callback.setup = setup_and_keep_trainer
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
    once = calls["on_train_batch_start"].pop(0)[0] + calls["on_train_batch_end"].pop(0)[0]
    clock = clock_cost()
    work = [
        sum(sum(call[i] for call in durations) - clock[i] * len(durations) for durations in calls.values())
        for i in (0, 1)
    ]
    step_cpu = [b - a for a, b in zip(batch_ends, batch_ends[1:], strict=False) if a is not None and b is not None]
    dispatch = dispatch_per_step(trainer)
    return {
        "steps": steps,
        "step_time_us": 1000 * callback.summary()["step_time_ms"],
        "step_cpu_us": 1e6 * statistics.median(step_cpu),
        "work_us": 1e6 * work[0] / steps,
        "work_cpu_us": 1e6 * work[1] / steps,
        "dispatch_us": dispatch[0],
        "dispatch_cpu_us": dispatch[1],
        "flop_count_once_ms": 1000 * (once - 2 * clock[0]),
        "every_n_steps": callback.every_n_steps,
    }


def clock_cost(repeats: int = 100000) -> tuple[float, float]:
    """What the clocks around each call add to it (wall, CPU), in seconds: subtracted from what they measured."""
    wall_total = cpu_total = 0.0

    def nothing():
        return None

    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            nothing()
        finally:
            wall_total += time.perf_counter() - wall
            cpu_total += time.thread_time() - cpu
    return wall_total / repeats, cpu_total / repeats


def dispatch_per_step(trainer, repeats: int = 20000) -> tuple[float, float]:
    """Lightning's cost (wall, CPU; µs) of calling one more do-nothing callback through the hooks of a training step."""
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

    def one_step_of_hooks() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.thread_time()
        for _ in range(repeats):
            for hook, args in per_step.items():
                call._call_callback_hooks(trainer, hook, *args)
        return (time.perf_counter() - wall) / repeats, (time.thread_time() - cpu) / repeats

    saved = trainer.callbacks
    try:
        trainer.callbacks = []
        without = [one_step_of_hooks() for _ in range(3)]
        trainer.callbacks = [Callback()]
        with_one = [one_step_of_hooks() for _ in range(3)]
    finally:
        trainer.callbacks = saved
    return tuple(1e6 * max(0.0, min(r[i] for r in with_one) - min(r[i] for r in without)) for i in (0, 1))


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
        run["cost_cpu_us"] = run["work_cpu_us"] + run["dispatch_cpu_us"]
        run["cost_cpu_fraction"] = run["cost_cpu_us"] / run["step_cpu_us"]
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"load average: {load}, torch threads: {args.threads or 'default'}")
    print("Wall clock, then (in brackets) CPU time of the training thread, which other programs disturb less.")
    print(
        "| run | steps | MLP step (µs) | callback work (µs/step) | Lightning dispatch (µs/step) | cost of the step "
        "| FLOP count, once (ms) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, run in [*((str(i + 1), run) for i, run in enumerate(runs)), ("median", median)]:
        print(
            f"| {name} | {run['steps']:.0f} | {run['step_time_us']:.0f} ({run['step_cpu_us']:.0f}) "
            f"| {run['work_us']:.2f} ({run['work_cpu_us']:.2f}) "
            f"| {run['dispatch_us']:.2f} ({run['dispatch_cpu_us']:.2f}) "
            f"| {100 * run['cost_fraction']:.2f}% ({100 * run['cost_cpu_fraction']:.2f}%) "
            f"| {run['flop_count_once_ms']:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "median": median}, indent=2))


if __name__ == "__main__":
    main()
