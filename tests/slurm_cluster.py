"""A real single-node SLURM cluster on this machine, for the cluster tests.

Debian's slurm-wlm and munge, bound to loopback: munged on its own socket, slurmctld and slurmd
with their state, spool, logs and PID files in a temporary folder. The node offers two fake GPUs
(``gres/gpu`` backed by /dev/null and /dev/zero) so that jobs asking for ``--gpus`` schedule; they
run on the CPU. Jobs may stay in ``squeue`` for MinJobAge = 600 s after they end, which is what
``slurm-status-command: squeue`` needs when there is no accounting database (there is none here).

The config goes to /etc/slurm/slurm.conf, where client commands look by default: Snakemake's
SLURM job step plugin clears every ``SLURM_*`` variable (``SLURM_CONF`` included) before its
``srun``, so a config found only through ``SLURM_CONF`` is lost inside jobs. It is written only
where no SLURM config exists yet, and removed again by ``stop``.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SLURM_DIR = Path("/etc/slurm")
PACKAGES = ["slurm-wlm", "munge"]
PARTITION = "debug"
MEMORY_MB = 4000


def install_packages() -> str | None:
    """Install slurm-wlm and munge with apt when missing (CI runs as root); None when ready,
    else why not."""
    if all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "munged", "sbatch")):
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "slurm-wlm and munge are not installed and apt-get as root is not available"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if run.returncode != 0:
            return f"{' '.join(command)} failed: {run.stderr[-2000:]}"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalSlurm:
    """Start with ``start()``; ``stop()`` ends exactly the daemons it started, by PID."""

    def __init__(self, folder: Path, cpus: int = 2, gpus: int = 2):
        self.folder = folder
        self.cpus = cpus
        self.gpus = gpus
        self.host = socket.gethostname().split(".")[0]
        self.pids: dict[str, int] = {}
        self.written: list[Path] = []

    def refusal(self) -> str | None:
        """Why this machine cannot host the test cluster, or None."""
        if os.geteuid() != 0:
            return "the test SLURM cluster needs root (it writes /etc/slurm/slurm.conf)"
        if (SLURM_DIR / "slurm.conf").exists() or os.environ.get("SLURM_CONF"):
            return "a SLURM config is installed already: not overwriting it with a test cluster"
        return None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for name in ("state", "spool", "log"):
            (self.folder / name).mkdir(exist_ok=True)
        self._start_munge()
        self._write_config()
        self._daemon("slurmctld", ["slurmctld", "-i"], self.folder / "slurmctld.pid")
        self._daemon("slurmd", ["slurmd"], self.folder / "slurmd.pid")
        self._wait_until_idle()

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                if not _alive(pid):
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        for path in self.written:
            path.unlink(missing_ok=True)
        self.written.clear()

    def log(self, name: str) -> str:
        path = self.folder / "log" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def jobs(self) -> list[dict]:
        """Every job slurmctld still remembers (MinJobAge): id, state, the comment Snakemake's
        plugin sets (``rule_<name>[_wildcards_<values>]``) and the GPUs it asked for."""
        fields = ["JobID", "State", "Comment", "tres-per-job"]
        listing = subprocess.run(
            ["squeue", "--states=all", "--noheader", "-O", ",".join(f"{f}:|" for f in fields)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows = []
        for line in listing.splitlines():
            job_id, state, comment, gpus = (part.strip() for part in line.split("|")[:4])
            rows.append({"id": job_id, "state": state, "comment": comment, "tres": gpus})
        return rows

    def _start_munge(self) -> None:
        key = self.folder / "munge.key"
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True)
        key.chmod(0o600)
        self.munge_socket = self.folder / "munge.socket"
        pid_file = self.folder / "munged.pid"
        self._daemon(
            "munged",
            [
                "munged",
                "--force",  # it runs as root here
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--log-file={self.folder / 'log' / 'munged.log'}",
                f"--pid-file={pid_file}",
                f"--seed-file={self.folder / 'munged.seed'}",
            ],
            pid_file,
        )

    def _write_config(self) -> None:
        folder = self.folder
        config = f"""\
ClusterName=deepauctest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={folder / "state"}
SlurmdSpoolDir={folder / "spool"}
SlurmctldPidFile={folder / "slurmctld.pid"}
SlurmdPidFile={folder / "slurmd.pid"}
SlurmctldLogFile={folder / "log" / "slurmctld.log"}
SlurmdLogFile={folder / "log" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
MinJobAge=600
GresTypes=gpu
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={MEMORY_MB} \
Gres=gpu:{self.gpus} State=UNKNOWN
PartitionName={PARTITION} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
"""
        devices = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random"][: self.gpus]
        gres = "".join(f"NodeName={self.host} Name=gpu File={device}\n" for device in devices)
        SLURM_DIR.mkdir(parents=True, exist_ok=True)
        for name, text in (("slurm.conf", config), ("gres.conf", gres)):
            path = SLURM_DIR / name
            if name == "gres.conf" and path.exists():
                raise RuntimeError(f"{path} exists already: not overwriting it")
            path.write_text(text)
            self.written.append(path)

    def _daemon(self, name: str, command: list[str], pid_file: Path) -> None:
        """Run a daemon that forks into the background and writes its PID file."""
        pid_file.unlink(missing_ok=True)
        subprocess.run(command, check=True, capture_output=True, timeout=60)
        for _ in range(200):
            if pid_file.exists() and pid_file.read_text().strip():
                self.pids[name] = int(pid_file.read_text().strip())
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} wrote no PID file; its log:\n{self.log(name)[-3000:]}")

    def _wait_until_idle(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        state = ""
        while time.monotonic() < deadline:
            state = subprocess.run(
                ["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True
            ).stdout.strip()
            if state == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(
            f"the test node is {state!r}, not idle; slurmctld log:\n"
            f"{self.log('slurmctld')[-3000:]}\nslurmd log:\n{self.log('slurmd')[-3000:]}"
        )


def _alive(pid: int) -> bool:
    """Running, and not a zombie: a daemon forks away from us, and what reaps it may be slow."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return not re.search(r"^State:\s+Z", status, re.MULTILINE)
