"""A one-node Slurm cluster on localhost for the tests: slurmctld and slurmd of
Debian's slurm-wlm, started in a temporary directory on free ports, without
munge (auth/none), and stopped afterwards. Where Slurm is not installed (or we
are not root, which slurmd needs), the tests that use it are skipped with the
reason; .ci/run installs slurm-wlm where apt-get can."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

CONF = """ClusterName=purltest
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=localhost CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def why_no_slurm() -> str | None:
    missing = [b for b in ("slurmctld", "slurmd", "sbatch", "srun", "sinfo") if shutil.which(b) is None]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} missing; Debian: apt-get install slurm-wlm)"
    if os.geteuid() != 0:
        return "a local slurmd needs root"
    return None


class LocalSlurm:
    def __init__(self, root: Path):
        self.root = root
        (root / "state").mkdir(parents=True)
        (root / "spool").mkdir()
        self.conf = root / "slurm.conf"
        self.conf.write_text(CONF.format(root=root, ctld_port=free_port(), d_port=free_port(), cpus=os.cpu_count()))
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self, timeout: float = 30) -> None:
        subprocess.run(["slurmctld", "-f", str(self.conf), "-i"], env=self.env, check=True)
        subprocess.run(["slurmd", "-f", str(self.conf), "-N", "localhost"], env=self.env, check=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True).stdout
            if state.strip() == "idle":
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"local Slurm did not come up in {timeout} s; see {self.root}/slurmctld.log and slurmd.log")

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld"):
            pid_file = self.root / f"{name}.pid"
            if pid_file.is_file():
                try:
                    os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass
