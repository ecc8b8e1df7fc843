"""Training throughput of a baked project's default pipeline against hand-written loops, on the same work.

Bakes the template with its default answers into a temporary folder, writes data there (no download),
and runs, per work, every pipeline in turn, ``--repeats`` rounds, so that a slow spell of a shared
machine hits them all. A pipeline's figure is the median samples/s (tokens/s for the LM) of the
training epochs after each run's first, validation excluded. Pipelines (the loops: benchmarks/loops.py):

- baked default: ``python train.py data=... data.<path>=...`` in the baked project, as a user runs it,
  plus one callback (epoch_timer.py) that times the training part of each epoch;
- hand-written: the loop people write (in-memory data: one normalized tensor, sliced; plain Adam);
- leanest: the same with ``torch.optim.Adam(fused=True)``, as the baked Classifier uses;
- Lightning, bare: the leanest loop's step and batches in Lightning's Trainer with everything off;
  ", tuned": with the baked harness's two fixes of Lightning's own costs (harness/performance.py).

Works: ``mlp`` (the default MLP on 55k MNIST-format images, batch 128; target: baked ≥ 0.9 of the leanest),
``image_folder`` (generated PNGs read by 2 DataLoader workers; target: baked ≥ 0.95 of a hand-written
torchvision ImageFolder + DataLoader loop with the same workers and decoding) and ``lm`` (a GPT, where the
bake has ``configs/model/gpt.yaml``; target: baked ≥ 0.9 of the leanest in tokens/s). Only ratios from one run
mean anything:
the same machine drifts by 10-30% from run to run.

    python benchmarks/throughput.py --threads 1 --repeats 3            # as the baked README's tables
    python benchmarks/throughput.py --quick --threads 1                 # does it all run? (~1 min)
    python benchmarks/throughput.py --works mlp --json out.json --readme path/to/README.md
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]
BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))

import loops  # noqa: E402

BAKED = "baked default"
HAND = "hand-written"
LEANEST = "leanest"
BARE = "Lightning, bare"
TUNED = "Lightning, bare, tuned"


@dataclass
class Work:
    name: str
    target: float  # the baked default's least ratio to `reference`
    reference: str  # the pipeline the target compares with
    epochs: int
    overrides: list[str]  # the baked run's data (and model) choice
    pipelines: dict[str, Callable[[], list[dict[str, float]]]]  # the hand-written ones
    unit: str = "samples"


@dataclass
class Result:
    work: str
    pipeline: str
    unit: str
    runs: list[list[dict[str, float]]] = field(default_factory=list)  # per run, its epochs
    first_step_s: list[float] = field(default_factory=list)
    peak_rss_mb: list[float] = field(default_factory=list)

    def rate(self, clock: str = "seconds") -> float:
        """The median over every run's epochs after its first, which pays for warm-up."""
        timed = [epoch for epochs in self.runs for epoch in epochs[1:] or epochs]
        return statistics.median(epoch["samples"] / epoch[clock] for epoch in timed)


# --------------------------------------------------------------------------- the baked project


def bake(into: Path) -> Path:
    from cookiecutter.main import cookiecutter

    project = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(into), overwrite_if_exists=True))
    sys.path.insert(0, str(project / "src"))
    return project


def package(project: Path, module: str):
    import importlib

    name = json.loads((project / ".cookiecutter.json").read_text())["package_name"]
    return importlib.import_module(f"{name}.{module}")


def project_env(project: Path, threads: int | None) -> dict[str, str]:
    path = [str(project / "src"), str(BENCHMARKS), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    else:
        env.pop("OMP_NUM_THREADS", None)
    return env


def run_baked(project: Path, work: Work, extra: list[str], device: str, threads: int | None, scratch: Path) -> dict:
    """``python train.py`` as a user runs it; its epochs, launch-to-first-step time and peak RSS."""
    timer = scratch / f"timer-{time.time_ns()}.json"
    command = [
        sys.executable,
        "train.py",
        *work.overrides,
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
        finished = subprocess.run(command, cwd=project, env=project_env(project, threads), stdout=output, stderr=output)
    if finished.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {finished.returncode}:\n{log.read_text()[-4000:]}")
    timed = json.loads(timer.read_text())
    return {"epochs": timed["epochs"], "first_step_s": timed["first_step_at"] - launched, "rss": timed["peak_rss_mb"]}


def startup_times(project: Path, repeats: int = 3) -> dict[str, float]:
    """Median wall time of ``train.py --help`` and ``train.py --cfg job``."""
    times = {}
    for flag in ("--help", "--cfg job"):
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            command = [sys.executable, "train.py", *flag.split()]
            subprocess.run(command, cwd=project, env=project_env(project, None), check=True, capture_output=True)
            runs.append(time.perf_counter() - started)
        times[flag] = statistics.median(runs)
    return times


# --------------------------------------------------------------------------- the works


def compose(project: Path, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(project / "configs"), version_base="1.3"):
        return compose("train", overrides=overrides)


def fresh_net(cfg, input_shape, num_classes, device: str):
    import torch
    from hydra.utils import instantiate

    torch.manual_seed(cfg.seed)
    return instantiate(cfg.model.net, input_shape=input_shape, num_classes=num_classes).to(device)


def adam(cfg, fused: bool):
    """The baked config's optimizer (Adam for the MLP), plain or fused."""
    from hydra.utils import instantiate

    make = instantiate(cfg.model.optimizer)
    return lambda params: make(params=params, fused=fused)


def mlp_work(project: Path, device: str, quick: bool, scratch: Path) -> Work:
    import torch
    from hydra.utils import instantiate

    data_dir = scratch / "data" / ("mnist-quick" if quick else "mnist")
    if not data_dir.exists():
        n_train = 12000 if quick else 60000
        package(project, "harness.synthetic").write_mnist(data_dir, n_train=n_train, n_test=1000)
    overrides = ["data=mnist", f"data.data_dir={data_dir}"]
    cfg = compose(project, overrides)
    datamodule = instantiate(cfg.data)  # the baked run's split: the same training examples
    datamodule.setup("fit")
    images, labels = datamodule.datasets["train"].tensors
    mean = torch.tensor(datamodule.mean).view(1, -1, 1, 1)
    std = torch.tensor(datamodule.std).view(1, -1, 1, 1)
    inputs = ((images.float() / datamodule.pixel_max - mean) / std).to(device)
    targets = labels.long().to(device)
    epochs, batch = (2 if quick else 3), cfg.data.batch_size

    def in_memory(fused: bool):
        net = fresh_net(cfg, datamodule.input_shape, datamodule.num_classes, device)
        return loops.in_memory(net, adam(cfg, fused)(net.parameters()), inputs, targets, batch, epochs)

    def bare(tuned: bool):
        net = fresh_net(cfg, datamodule.input_shape, datamodule.num_classes, device)
        # Tuned: the harness's two fixes of Lightning's own costs (harness/performance.py): a profiler that
        # costs nothing, and no NVML check (see lightning_environment).
        profiler = package(project, "harness.performance").NoProfiler() if tuned else None
        return loops.lightning_bare(net, adam(cfg, fused=True), inputs, targets, batch, epochs, profiler)

    pipelines = {
        HAND: lambda: in_memory(fused=False),
        LEANEST: lambda: in_memory(fused=True),
        BARE: lambda: bare(tuned=False),
        TUNED: lambda: bare(tuned=True),
    }
    return Work("mlp", 0.9, LEANEST, epochs, overrides, pipelines)


def image_folder_work(project: Path, device: str, quick: bool, scratch: Path) -> Work:
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    root = scratch / "data" / ("images-quick" if quick else "images")
    per_class = 40 if quick else 400
    if not root.exists():
        write = package(project, "harness.synthetic").write_image_folder
        for part, split in enumerate(("train", "val", "test")):
            write(
                root / split,
                n_per_class=per_class if split == "train" else 10,
                num_classes=10,
                size=(64, 64),
                part=part,
            )
    workers = 2
    overrides = ["data=image_folder", f"data.root={root}", f"data.num_workers={workers}"]
    cfg = compose(project, overrides)
    # The transform the baked data module applies (resize, to float, normalize), decoded by the same PIL loader.
    from hydra.utils import instantiate

    dataset = ImageFolder(str(root / "train"), transform=instantiate(cfg.data).transform(train=False))
    epochs = 2 if quick else 3

    def hand_written():
        import torch

        loader = DataLoader(
            dataset,
            batch_size=cfg.data.batch_size,
            shuffle=True,
            num_workers=workers,
            persistent_workers=True,
            pin_memory=device == "cuda",
        )
        net = fresh_net(cfg, (3, *cfg.data.image_size), len(dataset.classes), device)
        return loops.image_folder(net, adam(cfg, fused=True)(net.parameters()), loader, torch.device(device), epochs)

    return Work("image_folder", 0.95, HAND, epochs, overrides, {HAND: hand_written})


def lm_work(project: Path, device: str, quick: bool, scratch: Path) -> Work:
    if not (project / "configs" / "model" / "gpt.yaml").exists():
        raise Skipped("lm: skipped: the bake has no configs/model/gpt.yaml (model=gpt)")
    from hydra.utils import instantiate

    overrides = ["model=gpt", "data=python_docs", *(["data.max_bytes=60000"] if quick else [])]
    cfg = compose(project, overrides)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    inputs, targets = (tensor.to(device) for tensor in datamodule.datasets["train"].tensors)
    epochs = 2 if quick else 3

    def in_memory(fused: bool):
        import torch

        torch.manual_seed(cfg.seed)
        # The baked GPT itself, used as the plain nn.Module it also is: the same network and initialisation.
        net = instantiate(cfg.model, **datamodule.model_kwargs).to(device)
        optimizer = instantiate(cfg.model.optimizer)(params=net.parameters(), fused=fused)
        return loops.in_memory(net, optimizer, inputs, targets, cfg.data.batch_size, epochs)

    pipelines = {HAND: lambda: in_memory(fused=False), LEANEST: lambda: in_memory(fused=True)}
    return Work("lm", 0.9, LEANEST, epochs, overrides, pipelines, unit="tokens")


class Skipped(Exception):
    """A work this bake cannot run; the message says why."""


WORKS = {"mlp": mlp_work, "image_folder": image_folder_work, "lm": lm_work}


# --------------------------------------------------------------------------- the benchmark


def benchmark(
    project: Path,
    device: str,
    threads: int | None,
    works: list[str],
    quick: bool,
    repeats: int,
    scratch: Path,
    variants: dict[str, list[str]],
):
    """Every pipeline of every work, ``repeats`` rounds in turn; returns the results and the works' skip messages."""
    import torch

    torch.set_num_threads(threads or DEFAULT_THREADS)
    results, skipped = [], []
    for name in works:
        try:
            work = WORKS[name](project, device, quick, scratch)
        except Skipped as reason:
            print(reason, flush=True)
            skipped.append(str(reason))
            continue
        baked = {BAKED: [], **variants}
        rows = {pipeline: Result(work.name, pipeline, work.unit) for pipeline in [*work.pipelines, *baked]}
        for repeat in range(repeats):
            for pipeline, result in rows.items():
                print(
                    f"{device}, {threads or 'all'} threads, {work.name}: {pipeline} ({repeat + 1}/{repeats}) ...",
                    flush=True,
                )
                if pipeline in baked:
                    run = run_baked(project, work, baked[pipeline], device, threads, scratch)
                    result.runs.append(run["epochs"])
                    result.first_step_s.append(run["first_step_s"])
                    result.peak_rss_mb += [run["rss"]] if run["rss"] else []
                else:
                    with lightning_environment(pipeline == BARE):
                        result.runs.append(work.pipelines[pipeline]())
        results.append((work, list(rows.values())))
    return results, skipped


@contextlib.contextmanager
def lightning_environment(imported: bool):
    """The environment of a program that imports Lightning (``imported``) or not.

    Importing Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1, which on a machine without a GPU makes every
    Adam step reload the NVML library (~0.1 ms; the baked harness/performance.py undoes it). This process
    imports Lightning for the baked data modules, yet a hand-written loop runs as it would without Lightning,
    and Lightning bare as it does out of the box.
    """
    name, before = "PYTORCH_NVML_BASED_CUDA_CHECK", os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK")
    if imported:
        os.environ[name] = "1"
    else:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def ratio(rows: list[Result], row: Result, pipeline: str, clock: str = "seconds") -> float | None:
    reference = next((r for r in rows if r.pipeline == pipeline), None)
    return row.rate(clock) / reference.rate(clock) if reference else None


def table(results) -> str:
    lines = [
        "| work | pipeline | per second | × hand-written | × leanest | target | | × target's, CPU time "
        "| first step (s) | peak RSS (MB) |",
        "|---|---|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for work, rows in results:
        for row in rows:
            hand, lean = ratio(rows, row, HAND), ratio(rows, row, LEANEST)
            target = verdict = ""
            if row.pipeline == BAKED:
                target = f"≥ {work.target:g} × {work.reference}"
                verdict = "PASS" if ratio(rows, row, work.reference) >= work.target else "MISS"
            cells = [
                work.name,
                row.pipeline,
                f"{row.rate():,.0f} {row.unit}",
                f"{hand:.2f}" if hand else "",
                f"{lean:.2f}" if lean else "",
                target,
                verdict,
                f"{ratio(rows, row, work.reference, 'cpu_seconds'):.2f}",
                f"{statistics.median(row.first_step_s):.1f}" if row.first_step_s else "",
                f"{statistics.median(row.peak_rss_mb):.0f}" if row.peak_rss_mb else "",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def versions() -> str:
    import pytorch_lightning
    import torch

    python = platform.python_version()
    return f"torch {torch.__version__}, pytorch-lightning {pytorch_lightning.__version__}, Python {python}"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def report(results, skipped, device, threads, startup, command, load_before) -> str:
    """The Markdown the console shows and the README block holds."""
    threads_text = "one torch thread" if threads == 1 else f"{threads or DEFAULT_THREADS} torch threads"
    lines = [
        table(results),
        "",
        "Per second: the median over the epochs after each run's first. × target's, CPU time: the ratio to the "
        "target's reference per second of the training process's CPU time, which other programs on a busy machine "
        "disturb less than the wall clock (DataLoader workers' time not included).",
        f"Measured {datetime.date.today():%d %b %Y} on {device} ({machine()}), {threads_text} per process; "
        f"{versions()}. Command: `{command}`. Load average (1, 5, 15 min) {load_before} before, {load()} after: "
        f"a load above the core count means other programs shared the machine, and the figures are theirs too.",
        f"`python train.py --help` {startup['--help']:.2f} s (target < 1 s), "
        f"`python train.py --cfg job` {startup['--cfg job']:.2f} s (target < 1.5 s), medians of 3.",
    ]
    lines += [f"{reason}." for reason in skipped]
    if device == "cpu":
        lines.append("No GPU was measured here: the GPU targets need a machine with CUDA (the same command adds them).")
    return "\n".join(lines)


def readme_block(path: Path, key: str) -> re.Pattern:
    """The pattern of ``key``'s block in the README at ``path``; a clear exit where it has none."""
    begin, end = f"<!-- benchmark {key} -->", f"<!-- /benchmark {key} -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if not path.is_file() or not pattern.search(path.read_text()):
        raise SystemExit(f"--readme {path}: no block '{begin}' ... '{end}' to rewrite; add the markers where it goes.")
    return pattern


def write_readme(path: Path, key: str, block: str) -> None:
    begin, end = f"<!-- benchmark {key} -->", f"<!-- /benchmark {key} -->"
    path.write_text(readme_block(path, key).sub(lambda _: f"{begin}\n{block}\n{end}", path.read_text(), count=1))


def block_key(device: str, threads: int | None) -> str:
    if device != "cpu":
        return device
    return "cpu-1-thread" if threads == 1 else f"cpu-{threads or 'all'}-threads"


DEFAULT_THREADS = 1  # set in main(), before any thread count is changed


def main(argv: list[str] | None = None) -> int:
    global DEFAULT_THREADS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="less data and fewer epochs: checks it all runs")
    parser.add_argument("--works", default="mlp,image_folder,lm", help="comma-separated: mlp, image_folder, lm")
    parser.add_argument("--devices", default=None, help="cpu, cuda (default: cpu, and cuda if present)")
    parser.add_argument("--threads", default="1,all", help="torch CPU threads per process, comma-separated: N or all")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of every pipeline, taken in turn (default 2)")
    parser.add_argument(
        "--baked",
        action="append",
        default=[],
        metavar="'NAME: OVERRIDES'",
        help="another baked row, the default with these overrides, e.g. 'no callbacks: callbacks=none' (repeatable)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--readme", type=Path, help="rewrite this README's <!-- benchmark KEY --> blocks with the tables"
    )
    parser.add_argument("--keep", type=Path, help="bake and run in this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "benchmarks/throughput.py", *(argv if argv is not None else sys.argv[1:])])
    load_before = load()
    import torch

    DEFAULT_THREADS = torch.get_num_threads()
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    settings = [None if t == "all" else int(t) for t in args.threads.split(",")]
    variants = {}
    for variant in args.baked:
        name, colon, overrides = variant.partition(":")
        if not colon or not overrides.split():
            parser.error(
                f"--baked {variant!r}: give a name, a colon and overrides, e.g. 'no callbacks: callbacks=none'"
            )
        variants[name.strip()] = overrides.split()
    unknown = set(args.works.split(",")) - WORKS.keys()
    if unknown:
        parser.error(f"--works: unknown {sorted(unknown)}; choose from {', '.join(WORKS)}")
    runs = [(device, threads) for device in devices for threads in (settings if device == "cpu" else [None])]
    for device, threads in runs if args.readme else []:
        readme_block(args.readme, block_key(device, threads))  # before, not after the hour of measuring
    started, records = time.perf_counter(), []
    with tempfile.TemporaryDirectory(prefix="throughput-") as temporary:
        scratch = args.keep or Path(temporary)
        scratch.mkdir(parents=True, exist_ok=True)
        project = bake(scratch / "bake")
        startup = startup_times(project)
        for device, threads in runs:
            results, skipped = benchmark(
                project, device, threads, args.works.split(","), args.quick, args.repeats, scratch, variants
            )
            key = block_key(device, threads)
            block = report(results, skipped, device, threads, startup, command, load_before)
            print(f"\n### {key}\n\n{block}\n", flush=True)
            if args.readme:
                write_readme(args.readme, key, block)
            for work, rows in results:
                for row in rows:
                    records.append(
                        {
                            **vars(row),
                            "key": key,
                            "rate": row.rate(),
                            "target": work.target,
                            "reference": work.reference,
                        }
                    )
    print(f"Benchmark took {time.perf_counter() - started:.0f} s.")
    if args.json:
        figures = {"machine": machine(), "versions": versions(), "startup_s": startup, "results": records}
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
