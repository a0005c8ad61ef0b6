"""A throw-away single-node Slurm on this machine, for testing the workflow's cluster profile.

Installs Debian's munge, slurmctld, slurmd and slurm-client when missing, writes its configuration into a
folder of its own (nothing under /etc/slurm), starts the daemons, and stops exactly the daemons it
started. Facts behind the settings (status polling without accounting, fake GPUs, memory): SLURM.md in
the project's shared notes; each is repeated where it is used below.

    python tests/slurm/cluster.py start DIR   # prints the SLURM_CONF to export
    python tests/slurm/cluster.py stop DIR
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("munge", "slurm-client", "slurmctld", "slurmd")
PARTITION = "debug"
FAKE_GPUS = 2
# The node offers more CPUs than the machine has (slurmd's config_overrides), so that independent jobs
# run side by side: most of a test job's time is Python and Snakemake starting up and the plugin's status
# polling, not computing; with the real 2 CPUs every 2-thread job held the whole node and 52 jobs ran one
# by one (~18 min). A job still gets the threads it asks for.
VIRTUAL_CPUS = 8


class SlurmUnavailable(Exception):
    """Why a local Slurm cannot be had here (the test skips with this reason)."""


def _run(cmd, check=True, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout, **kwargs)


def _installed(package: str) -> bool:
    out = _run(["dpkg-query", "-W", "-f=${Status}", package], check=False)
    return out.returncode == 0 and "install ok installed" in out.stdout


def install() -> list[str]:
    """apt-get install the missing packages; returns what was installed. Raises SlurmUnavailable."""
    if os.geteuid() != 0:
        raise SlurmUnavailable("needs root to install and start Slurm daemons")
    if not shutil.which("dpkg-query") or not shutil.which("apt-get"):
        raise SlurmUnavailable("no apt-get/dpkg here (Debian's Slurm packages are used)")
    missing = [p for p in PACKAGES if not _installed(p)]
    if not missing:
        return []
    # The packages' postinst runs `invoke-rc.d <daemon> start`; a deny-all policy keeps apt from starting
    # daemons (there is no init system here, and this test starts its own).
    policy = Path("/usr/sbin/policy-rc.d")
    added_policy = not policy.exists()
    if added_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        update = _run(["apt-get", "update", "-q"], check=False, env=env, timeout=300)
        inst = _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], check=False,
                    env=env, timeout=600)
    finally:
        if added_policy:
            policy.unlink(missing_ok=True)
    if inst.returncode != 0:
        raise SlurmUnavailable(f"apt-get install {' '.join(missing)} failed: "
                               f"{(update.stderr + inst.stderr).strip()[-500:]}")
    return missing


def _pid_alive(pid: int, comm: str) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == comm
    except OSError:
        return False


def _stop_pid(pidfile: Path, comm: str, wait: float = 10.0) -> None:
    """SIGTERM the process in ``pidfile`` if it is still ``comm``; SIGKILL it after ``wait`` seconds."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    if not _pid_alive(pid, comm):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _pid_alive(pid, comm):
        time.sleep(0.2)
    if _pid_alive(pid, comm):
        os.kill(pid, signal.SIGKILL)


class LocalSlurm:
    """One controller and one compute node on this host, configured and logged under ``root``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.conf = self.root / "slurm.conf"
        self.host = socket.gethostname().split(".")[0]
        self.started_munge = False

    @property
    def env(self) -> dict:
        """Environment for client commands (sbatch, squeue, ...) and everything they start.

        The Snakemake jobstep plugin removes every SLURM_* variable, SLURM_CONF included, before it runs
        ``srun`` inside a job; on a real cluster srun then reads /etc/slurm. This cluster's configuration
        lives in its own folder, so an ``srun`` first on PATH puts SLURM_CONF back.
        """
        return dict(os.environ, SLURM_CONF=str(self.conf),
                    PATH=f"{self.root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")

    def _write_srun_wrapper(self) -> None:
        real = shutil.which("srun", path=os.environ.get("PATH", "") + ":/usr/bin")
        wrapper = self.root / "bin" / "srun"
        wrapper.parent.mkdir(parents=True, exist_ok=True)
        wrapper.write_text(f'#!/bin/sh\nexport SLURM_CONF="{self.conf}"\nexec {real} "$@"\n')
        wrapper.chmod(0o755)

    # ------------------------------------------------------------------ munge
    def _munge_ok(self) -> bool:
        enc = _run(["munge", "-n"], check=False)
        return enc.returncode == 0 and _run(["unmunge"], input=enc.stdout, check=False).returncode == 0

    def _start_munge(self) -> None:
        if self._munge_ok():
            return  # someone else's munged: use it, never stop it
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            _run(["/usr/sbin/mungekey", "--create", "--keyfile", str(key)])
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        _run(["/usr/sbin/runuser", "-u", "munge", "--", "/usr/sbin/munged", "--force"])
        self.started_munge = True
        (self.root / "started-munge").write_text("1")
        for _ in range(50):
            if self._munge_ok():
                return
            time.sleep(0.1)
        raise SlurmUnavailable("munged started but `munge -n | unmunge` fails")

    # ------------------------------------------------------------------ configuration
    def _node_line(self) -> str:
        detected = _run(["/usr/sbin/slurmd", "-C"]).stdout.splitlines()[0]
        fields = dict(f.split("=", 1) for f in detected.split() if "=" in f)
        # RealMemory above what slurmd detects makes the node INVAL ("Low RealMemory"): keep a margin.
        fields["RealMemory"] = str(max(1024, int(fields.get("RealMemory", "2048")) - 512))
        fields.pop("NodeName", None)
        if VIRTUAL_CPUS > int(fields.get("CPUs", "1")):  # one socket of VIRTUAL_CPUS cores (config_overrides)
            fields.update(CPUs=str(VIRTUAL_CPUS), Boards="1", SocketsPerBoard="1", CoresPerSocket=str(VIRTUAL_CPUS),
                          ThreadsPerCore="1")
        topo = " ".join(f"{k}={fields[k]}" for k in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket",
                                                       "ThreadsPerCore", "RealMemory") if k in fields)
        return f"NodeName={self.host} NodeAddr=127.0.0.1 {topo} Gres=gpu:{FAKE_GPUS} State=UNKNOWN"

    def write_config(self) -> None:
        for sub in ("state", "spool", "fakegpu"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # GPU rules request --gpus: without GRES sbatch rejects them. Fake GPUs are device files that
        # gres/gpu accepts (symlinks to /dev/null); torch still sees no CUDA device, so jobs use the CPU.
        for i in range(FAKE_GPUS):
            link = self.root / "fakegpu" / f"gpu{i}"
            if not link.is_symlink():
                link.symlink_to("/dev/null")
        r = self.root
        self.conf.write_text(f"""\
ClusterName=proxysegtest
SlurmctldHost={self.host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without it a job that states no --mem gets the whole node
DefMemPerCPU=512
# no accounting here: the Snakemake plugin polls squeue, which needs finished jobs kept this long
# (at least 3 x its init_seconds_before_status_checks, else it silently falls back to sacct and hangs);
# an hour, so that the test can still read every job's TRES (GPU requests) after the run
MinJobAge=3600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
# trust the node line over the detected hardware (VIRTUAL_CPUS)
SlurmdParameters=config_overrides
MailProg=/bin/true
GresTypes=gpu
{self._node_line()}
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        (r / "gres.conf").write_text(f"NodeName={self.host} Name=gpu File={r}/fakegpu/gpu[0-{FAKE_GPUS - 1}]\n")

    # ------------------------------------------------------------------ daemons
    def start(self, timeout: float = 60.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not Path("/usr/sbin/slurmctld").exists():
            raise SlurmUnavailable("/usr/sbin/slurmctld is not installed")
        self._start_munge()
        self.write_config()
        self._write_srun_wrapper()
        _run(["/usr/sbin/slurmctld", "-i", "-f", str(self.conf)], env=self.env)
        _run(["/usr/sbin/slurmd", "-f", str(self.conf), "-N", self.host], env=self.env)
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            out = _run(["sinfo", "-h", "-n", self.host, "-o", "%T"], check=False, env=self.env)
            state = out.stdout.strip()
            if state == "idle":
                break
            if state.startswith("drain"):  # a drain survives restarts: resume it
                _run(["scontrol", "update", f"NodeName={self.host}", "State=RESUME"], check=False, env=self.env)
            time.sleep(0.5)
        else:
            raise RuntimeError(f"Slurm node not idle after {timeout:.0f} s (state {state!r}); "
                               f"see {self.root}/slurmctld.log and slurmd.log")
        probe = _run(["srun", "-N1", "-n1", "--mem=100", "-t", "1", "hostname"], check=False, env=self.env, timeout=60)
        if probe.returncode != 0:
            raise RuntimeError(f"srun self-test failed: {probe.stderr.strip()}")

    def stop(self) -> None:
        """Cancel this cluster's jobs, stop its daemons, and munged if this object started it."""
        if self.conf.exists():
            _run(["scancel", "--user", "root"], check=False, env=self.env, timeout=30)
        _stop_pid(self.root / "slurmd.pid", "slurmd")
        _stop_pid(self.root / "slurmctld.pid", "slurmctld")
        if self.started_munge or (self.root / "started-munge").exists():
            _stop_pid(Path("/run/munge/munged.pid"), "munged")
            (self.root / "started-munge").unlink(missing_ok=True)


def submitted_jobs(log: str) -> dict[str, str]:
    """``{slurm job id: rule}`` from a Snakemake log (the plugin's submission lines)."""
    found = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: \S*?/rule_(\w+)/", log)
    return dict(found)


def job_gpus(env: dict) -> dict[str, str]:
    """``{slurm job id: TresPerJob}`` ('' without one; GPU jobs: 'gres:gpu:1') of the jobs the controller
    still remembers (MinJobAge)."""
    out = _run(["scontrol", "-o", "show", "job"], check=False, env=env).stdout
    jobs = {}
    for line in out.splitlines():
        job = re.search(r"\bJobId=(\d+)", line)
        if job:
            tres = re.search(r"\bTresPerJob=(\S+)", line)
            jobs[job.group(1)] = tres.group(1) if tres else ""
    return jobs


if __name__ == "__main__":  # pragma: no cover - manual use
    action, folder = sys.argv[1], sys.argv[2]
    cluster = LocalSlurm(folder)
    if action == "start":
        install()
        cluster.start()
        print(f"export SLURM_CONF={cluster.conf} PATH={cluster.root / 'bin'}:$PATH")
    else:
        cluster.stop()
