"""Which launcher started this process, which rank it is, and which launches Hydra's multirun can drive.

Lightning picks its cluster environment from the launcher's variables in a fixed order
(torchrun, then srun, then its own launcher); the functions here read them in the same
order, so they agree with the Trainer before it has set anything up.
"""

import os


class MultirunLaunchError(SystemExit):
    """``-m`` together with a Trainer that would start its own processes by re-running train.py.

    A SystemExit, like argparse's refusals: Hydra records an ordinary exception as a failed job
    and goes on with the next one, whereas this stops the whole sweep and prints the message.
    """


def _srun_used() -> bool:
    # As Lightning decides: an allocation named "bash" or "interactive" is a shell, not a launcher.
    return "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")


def launched_externally() -> bool:
    """Whether torchrun or srun started every rank: then each rank composes the config itself."""
    return "TORCHELASTIC_RUN_ID" in os.environ or _srun_used()


def is_global_zero() -> bool:
    """Whether this process is global rank 0, also before the Trainer has set up the ranks."""
    env = os.environ
    if "TORCHELASTIC_RUN_ID" in env:
        return int(env.get("RANK", 0)) == 0
    if _srun_used():
        return int(env.get("SLURM_PROCID", 0)) == 0
    # Lightning's own launcher: NODE_RANK from the user on each node, LOCAL_RANK set in the processes it starts.
    node_rank = int(env.get("NODE_RANK", env.get("GROUP_RANK", 0)))
    return node_rank == 0 and int(env.get("LOCAL_RANK", 0)) == 0


def check_multirun_launch(trainer) -> None:
    """Refuse ``-m`` with a Trainer that starts its ranks by re-running the script, before any work is done.

    Lightning's launcher starts each extra rank as ``python train.py <the same arguments>``; under
    ``-m`` that child runs the whole sweep again, leaving stray run folders and, with a sweeper
    that samples, ranks that train with different hyperparameters.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    launcher = getattr(trainer.strategy, "launcher", None)
    if not isinstance(launcher, _SubprocessScriptLauncher) or launcher.cluster_environment.creates_processes_externally:
        return
    if launcher.num_processes * launcher.num_nodes == 1:
        return
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    raise MultirunLaunchError(multirun_launch_refusal(launcher.num_processes, launcher.num_nodes))


def multirun_launch_refusal(processes: int, nodes: int) -> str:
    """Why ``-m`` cannot drive a Trainer that starts ``processes`` per node itself, and what to run instead."""
    return (
        f"-m (multirun) cannot drive a Trainer that starts its own {processes} process(es) per node "
        f"on {nodes} node(s): every process Lightning starts would run the whole sweep again. "
        "Sweep over distributed runs with `python train.py -m cluster=slurm ...`, where each job gets its own "
        "allocation and srun starts its ranks; or launch one run at a time without -m, with Lightning's launcher "
        "(`python train.py trainer=ddp ...`) or with torchrun (`torchrun --nproc-per-node=N train.py trainer=ddp ...`)."
    )
