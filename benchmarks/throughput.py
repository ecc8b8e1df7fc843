"""Training throughput of a baked project against a hand-written PyTorch loop, on the same work.

Bakes the template with its default answers into a temporary folder, writes MNIST- and
CIFAR-10-format data there (no download) and measures, per work, the median samples/s of
the training epochs after the first, validation excluded:

- baked: ``python train.py data=... model=...`` in the baked project, as a user runs it, plus
  one callback (epoch_timer.py) that times the training part of each epoch;
- raw: a loop written here with the same network, optimizer, scheduler and batch size (all
  taken from the baked config), the data one normalized tensor on the device, shuffled once per
  epoch and cut into batches by slicing.

Works: the MLP on MNIST-format data (batch 128) and the ``cnn`` ResNet on CIFAR-10-format data
(batch 512; on CPU a subset of it, as one CPU epoch of the full set takes a quarter of an hour).
CPU always, CUDA when present; besides the plain loop, the loop with a fused optimizer (as the baked
Classifier uses on both) and with torch.compile, and on CUDA in bf16 autocast.
Only ratios from one run mean anything: the same machine drifts ~10% from run to run.

    python benchmarks/throughput.py                 # the full benchmark (make bench)
    python benchmarks/throughput.py --quick         # a short run that checks it all works
    python benchmarks/throughput.py --works mlp --devices cpu --json out.json
"""

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]
BENCHMARKS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Work:
    name: str
    overrides: tuple[str, ...]  # picks data and model in the baked config
    dataset: str  # "mnist" or "cifar10": which synthetic writer fills data_dir
    images: int  # images written to the training file, before the validation split
    epochs: int


def works_for(device: str, quick: bool) -> list[Work]:
    mlp = ("data=mnist", "model=mlp")
    cnn = ("data=cifar10", "model=cnn")
    if quick:
        return [Work("mlp", mlp, "mnist", 12000, 3), Work("cnn", cnn, "cifar10", 300, 2)]
    if device == "cpu":
        # About 1000 CIFAR training images (two batches of 512): the CNN runs at ~50 samples/s on 2 cores.
        return [Work("mlp", mlp, "mnist", 60000, 5), Work("cnn", cnn, "cifar10", 1140, 3)]
    return [Work("mlp", mlp, "mnist", 60000, 8), Work("cnn", cnn, "cifar10", 50000, 6)]


@dataclass
class Result:
    device: str
    work: str
    pipeline: str
    kind: str  # "raw" or "baked"
    precision: str  # "32" or "bf16"
    runs: list[list[dict[str, float]]] = field(default_factory=list)  # per run, its epochs
    first_step_s: list[float] = field(default_factory=list)
    peak_rss_mb: list[float] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)

    def samples_per_s(self, clock: str = "seconds") -> float:
        """The median over every run's epochs after its first, which pays for warm-up and compilation.

        ``clock="cpu_seconds"``: per second of this process's CPU time, which other programs on a
        shared machine disturb less than the wall clock (with one thread it is the wall time of a
        quiet machine).
        """
        timed = [epoch for epochs in self.runs for epoch in epochs[1:] or epochs]
        return statistics.median(epoch["samples"] / epoch[clock] for epoch in timed)


# --------------------------------------------------------------------------- the baked project


def bake(into: Path) -> Path:
    from cookiecutter.main import cookiecutter

    project = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(into), overwrite_if_exists=True))
    sys.path.insert(0, str(project / "src"))
    return project


def package_name(project: Path) -> str:
    return json.loads((project / ".cookiecutter.json").read_text())["package_name"]


def write_data(project: Path, work: Work, root: Path) -> Path:
    import importlib

    synthetic = importlib.import_module(f"{package_name(project)}.harness.synthetic")
    data_dir = root / f"{work.dataset}-{work.images}"
    if not data_dir.exists():
        writer = synthetic.write_mnist if work.dataset == "mnist" else synthetic.write_cifar10
        writer(data_dir, n_train=work.images, n_test=max(work.images // 10, 100))
    return data_dir


def project_env(project: Path) -> dict[str, str]:
    path = [str(project / "src"), str(BENCHMARKS), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}


def run_baked(project: Path, work: Work, data_dir: Path, device: str, extra: tuple[str, ...], scratch: Path) -> dict:
    """``python train.py`` as a user runs it; returns its epochs, launch-to-first-step time and peak RSS
    (up to the end of training)."""
    timer = scratch / f"timer-{time.time_ns()}.json"
    command = [
        sys.executable,
        "train.py",
        *work.overrides,
        f"data.data_dir={data_dir}",
        f"trainer.max_epochs={work.epochs}",
        f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
        f"paths.log_dir={scratch / 'logs'}",
        "test=false",
        "+callbacks.epoch_timer._target_=epoch_timer.EpochTimer",
        f"+callbacks.epoch_timer.path={timer}",
        *extra,
    ]
    log = scratch / f"{timer.stem}.log"
    with open(log, "w") as output:
        launched = time.time()
        finished = subprocess.run(command, cwd=project, env=project_env(project), stdout=output, stderr=output)
    if finished.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {finished.returncode}:\n{log.read_text()[-4000:]}")
    timed = json.loads(timer.read_text())
    return {
        "epochs": timed["epochs"],
        "first_step_s": timed["first_step_at"] - launched,
        "peak_rss_mb": timed["peak_rss_mb"],
    }


def startup_times(project: Path, repeats: int = 3) -> dict[str, float]:
    """Median wall time of ``train.py --help`` and ``train.py --cfg job``."""
    times = {}
    for flag in ("--help", "--cfg job"):
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "train.py", *flag.split()],
                cwd=project,
                env=project_env(project),
                check=True,
                capture_output=True,
            )
            runs.append(time.perf_counter() - started)
        times[flag] = statistics.median(runs)
    return times


# --------------------------------------------------------------------------- the hand-written loop


def compose(project: Path, work: Work, data_dir: Path):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(project / "configs"), version_base="1.3"):
        return compose("train", overrides=[*work.overrides, f"data.data_dir={data_dir}"])


def run_raw(
    cfg, work: Work, device: str, *, fused: bool = False, compiled: bool = False, bf16: bool = False
) -> list[dict[str, float]]:
    """The loop people write by hand; returns the seconds and samples of each epoch."""
    import importlib

    import torch
    from hydra.utils import instantiate
    from torch.nn import functional

    torch.manual_seed(cfg.seed)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    # Importing Lightning (for the data module) set this; a loop without Lightning runs without it.
    os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    images, labels = datamodule.datasets["train"].tensors
    mean = torch.tensor(datamodule.mean).view(1, -1, 1, 1)
    std = torch.tensor(datamodule.std).view(1, -1, 1, 1)
    inputs = ((images.float() / datamodule.pixel_max - mean) / std).to(device)
    targets = labels.to(device)
    augment = importlib.import_module(type(datamodule).__module__.split(".")[0] + ".harness.in_memory").augment

    net = instantiate(cfg.model.net, input_shape=datamodule.input_shape, num_classes=datamodule.num_classes)
    net = net.to(device)
    # The tuned GPU variants of a convnet run on NHWC memory, as the baked Classifier does on a GPU.
    channels_last = device == "cuda" and (fused or bf16) and any(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = instantiate(cfg.model.optimizer)(params=net.parameters(), **({"fused": True} if fused else {}))
    scheduler = None
    if cfg.model.scheduler is not None:
        scheduler = instantiate(cfg.model.scheduler.scheduler)(optimizer=optimizer)
    forward = torch.compile(net) if compiled else net
    net.train()

    def now() -> tuple[float, float]:
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter(), time.process_time()

    n, batch_size, epochs = len(targets), cfg.data.batch_size, []
    for _ in range(work.epochs):
        started = now()
        order = torch.randperm(n, device=device)
        shuffled_inputs, shuffled_targets = inputs.index_select(0, order), targets.index_select(0, order)
        for start in range(0, n, batch_size):
            x, y = shuffled_inputs[start : start + batch_size], shuffled_targets[start : start + batch_size]
            if cfg.data.augment:
                x = augment(x)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
                loss = functional.cross_entropy(forward(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        (wall, cpu), (wall_started, cpu_started) = now(), started
        epochs.append({"samples": n, "seconds": wall - wall_started, "cpu_seconds": cpu - cpu_started})
    return epochs


# --------------------------------------------------------------------------- the benchmark


RAW_VARIANTS = {
    # name: (keyword arguments of run_raw, precision, devices)
    "raw eager": ({}, "32", ("cpu", "cuda")),
    "raw compile": ({"compiled": True}, "32", ("cpu",)),
    "raw fused": ({"fused": True}, "32", ("cpu", "cuda")),
    "raw compile + fused": ({"fused": True, "compiled": True}, "32", ("cuda",)),
    "raw bf16 + fused": ({"fused": True, "bf16": True}, "bf16", ("cuda",)),
    "raw bf16 + compile + fused": ({"fused": True, "compiled": True, "bf16": True}, "bf16", ("cuda",)),
}
BAKED_VARIANTS = {
    # name: (extra command-line overrides, precision, devices)
    "baked default": ((), "32", ("cpu", "cuda")),
    "baked model.compile=true": (("model.compile=true",), "32", ("cpu", "cuda")),
    "baked bf16-mixed": (("trainer.precision=bf16-mixed",), "bf16", ("cuda",)),
    "baked bf16-mixed + compile": (("trainer.precision=bf16-mixed", "model.compile=true"), "bf16", ("cuda",)),
}


def benchmark(
    project: Path, device: str, quick: bool, names: list[str], repeats: int, scratch: Path, log=print
) -> list[Result]:
    """Every variant, ``repeats`` times in turn, so that a slow spell of a shared machine hits them all."""
    results = []
    for work in works_for(device, quick):
        if work.name not in names:
            continue
        data_dir = write_data(project, work, scratch / "data")
        cfg = compose(project, work, data_dir)
        raw = {
            name: (kwargs, Result(device, work.name, name, "raw", precision))
            for name, (kwargs, precision, devices) in RAW_VARIANTS.items()
            if device in devices and not (quick and name != "raw eager")
        }
        baked = {
            name: (extra, Result(device, work.name, name, "baked", precision))
            for name, (extra, precision, devices) in BAKED_VARIANTS.items()
            if device in devices and not (quick and name != "baked default")
        }
        for repeat in range(repeats):
            for name, (kwargs, result) in raw.items():
                log(f"{device} {work.name}: {name} ({repeat + 1}/{repeats}) ...")
                result.runs.append(run_raw(cfg, work, device, **kwargs))
            for name, (extra, result) in baked.items():
                log(f"{device} {work.name}: {name} ({repeat + 1}/{repeats}) ...")
                run = run_baked(project, work, data_dir, device, extra, scratch)
                result.runs.append(run["epochs"])
                result.first_step_s.append(run["first_step_s"])
                if run["peak_rss_mb"] is not None:
                    result.peak_rss_mb.append(run["peak_rss_mb"])
        results += [result for _, result in [*raw.values(), *baked.values()]]
    for result in results:
        peers = [r for r in results if r.device == result.device and r.work == result.work and r.kind == "raw"]
        eager = next(r for r in peers if r.pipeline == "raw eager")
        best = max((r for r in peers if r.precision == result.precision), key=lambda r: r.samples_per_s())
        result.ratios = {
            "raw eager": result.samples_per_s() / eager.samples_per_s(),
            "best raw": result.samples_per_s() / best.samples_per_s(),
            "raw eager, CPU time": result.samples_per_s("cpu_seconds") / eager.samples_per_s("cpu_seconds"),
        }
    return results


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name()}"
    return text


def table(results: list[Result]) -> str:
    lines = [
        "| device | work | pipeline | samples/s | × raw eager | × best raw | × raw eager, CPU time "
        "| first step (s) | peak RSS (MB) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        first = f"{statistics.median(r.first_step_s):.1f}" if r.first_step_s else ""
        rss = f"{statistics.median(r.peak_rss_mb):.0f}" if r.peak_rss_mb else ""
        lines.append(
            f"| {r.device} | {r.work} | {r.pipeline} | {r.samples_per_s():,.0f} | {r.ratios['raw eager']:.2f} "
            f"| {r.ratios['best raw']:.2f} | {r.ratios['raw eager, CPU time']:.2f} | {first} | {rss} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and epochs, default pipelines only")
    parser.add_argument("--works", default="mlp,cnn", help="comma-separated: mlp, cnn")
    parser.add_argument("--devices", default=None, help="cpu, cuda (default: cpu, and cuda if present)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each variant, taken in turn (default 1)")
    parser.add_argument("--threads", type=int, help="torch CPU threads of every run (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", type=Path, help="bake and run in this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)

    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the baked runs, started after this
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory(prefix="throughput-") as temporary:
        scratch = args.keep or Path(temporary)
        scratch.mkdir(parents=True, exist_ok=True)
        project = bake(scratch / "bake")
        started = time.perf_counter()
        startup = startup_times(project)
        results = []
        for device in devices:
            results += benchmark(project, device, args.quick, args.works.split(","), args.repeats, scratch)
    print()
    print(f"Machine: {machine()}")
    print(f"Command: python benchmarks/throughput.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(table(results))
    print()
    print(f"train.py --help: {startup['--help']:.2f} s, train.py --cfg job: {startup['--cfg job']:.2f} s")
    print(f"Benchmark took {time.perf_counter() - started:.0f} s.")
    if args.json:
        records = [{**vars(r), "samples_per_s": r.samples_per_s()} for r in results]
        args.json.write_text(json.dumps({"machine": machine(), "startup_s": startup, "results": records}, indent=2))
    ok = all(math.isfinite(r.samples_per_s()) and r.samples_per_s() > 0 for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
