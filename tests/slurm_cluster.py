"""A real SLURM cluster on this machine: slurmctld and two slurmd ("nodes") on localhost.

Everything it needs lives in one folder: slurm.conf, state, spool, logs and pid files. Client
commands (sbatch, squeue, scontrol) find it through $SLURM_CONF; ports are picked free, so two
clusters (two test sessions) never collide.
"""

import getpass
import os
import shutil
import socket
import subprocess
import time
from contextlib import closing
from pathlib import Path

NODES = ("node1", "node2")
# One CPU per node: a 2-node job uses the whole machine, and a job array's parallelism limit shows.
CONF = """\
ClusterName=pytest
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
AuthType=auth/none
CredType=cred/none
# A requeued job may start again after cred_expire seconds (default 120).
AuthInfo=cred_expire=5
SlurmUser={user}
SlurmdUser={user}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
# Start jobs (a requeued one too) within a second, not at the next 60-second scheduling pass.
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
KillWait=5
MinJobAge=600
NodeName=node[1-2] NodeHostname=localhost NodeAddr=127.0.0.1 Port={node_ports} CPUs=1 RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


class SlurmCluster:
    """Start with ``start()``, stop with ``stop()``; ``env`` is the environment client commands need."""

    def __init__(self, root: Path):
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.processes: list[subprocess.Popen] = []

    def start(self, timeout: float = 60) -> "SlurmCluster":
        for folder in ("state", "log", *(f"spool/{node}" for node in NODES)):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        ctld_port, first_node_port = _free_ports()
        self.conf.write_text(
            CONF.format(
                root=self.root,
                user=getpass.getuser(),
                ctld_port=ctld_port,
                node_ports=f"{first_node_port}-{first_node_port + len(NODES) - 1}",
            )
        )
        self._spawn("slurmctld", "-D", "-i", "-f", str(self.conf))
        for node in NODES:
            self._spawn("slurmd", "-D", "-N", node, "-f", str(self.conf))
        self._wait_until_idle(timeout)
        return self

    def _spawn(self, *command: str) -> None:
        log = (self.root / "log" / f"{command[0]}-{len(self.processes)}.out").open("w")
        self.processes.append(subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT))

    def _wait_until_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        states = ""
        while time.monotonic() < deadline:
            if died := [p.args[0] for p in self.processes if p.poll() is not None]:
                raise RuntimeError(f"{', '.join(died)} exited at start:\n{self.logs()}")
            result = self.command("sinfo", "--noheader", "--Node", "--format=%N %t", check=False)
            states = result.stdout.strip()
            if result.returncode == 0 and states.count("idle") == len(NODES):
                return
            time.sleep(0.5)
        raise TimeoutError(f"SLURM nodes not idle after {timeout:.0f} s (sinfo: {states!r}):\n{self.logs()}")

    def command(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=30, check=check)

    def wait(self, job_id: str, timeout: float = 300) -> None:
        """Until the job has ended (``sbatch --wait`` polls at growing intervals, up to half a minute)."""
        deadline = time.monotonic() + timeout
        while self.command("squeue", "--noheader", f"--jobs={job_id}", check=False).stdout.strip():
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still queued or running after {timeout:.0f} s")
            time.sleep(0.3)

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()[-3000:]}" for path in sorted(self.root.glob("log/*")))

    def stop(self) -> None:
        # Jobs first, and until they are gone: slurmd and slurmctld must see every job step end,
        # or its training process and slurmstepd outlive the cluster.
        self.command("scancel", "--full", f"--user={getpass.getuser()}", check=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.command("squeue", "--noheader", check=False).stdout.strip():
            time.sleep(0.2)
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


def slurm_installed() -> bool:
    return all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "sbatch", "sinfo"))


def _free_ports() -> tuple[int, int]:
    """A free port for slurmctld and a free pair of consecutive ports for the two slurmd."""
    for _ in range(50):
        with closing(socket.socket()) as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + len(NODES) < 65535 and all(_is_free(port) for port in range(base, base + len(NODES) + 1)):
            return base + len(NODES), base
    raise RuntimeError("no three free consecutive TCP ports on 127.0.0.1 for slurmctld and two slurmd")


def _is_free(port: int) -> bool:
    with closing(socket.socket()) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
