"""A single-node SLURM on this machine, for trying the cluster path (and for the tests that submit to it).

    python scripts/local_slurm.py start /tmp/slurm [--cpus 4]   # prints: export SLURM_CONF=/tmp/slurm/slurm.conf
    export SLURM_CONF=/tmp/slurm/slurm.conf
    sbatch ... ; squeue ; python train.py -m hydra/launcher=submitit_slurm hydra.launcher.partition=debug ...
    python scripts/local_slurm.py stop /tmp/slurm
    python scripts/local_slurm.py install                    # only install the packages (what .ci/run does)

Needs root (slurmd runs jobs as their users). When SLURM or MUNGE is missing it installs Debian's packages
(slurmctld, slurmd, slurm-client, munge; about 13 s). Everything it writes lives in the given folder: its own
MUNGE key and socket, `slurm.conf` (read only by commands that have `SLURM_CONF` pointing at it), state, spool,
logs and pid files, on ports of its own, so a cluster configured on this machine is never touched. One node
named after this host, one partition `debug`, no accounting (`sacct` fails), the job-step plugins that work
in a container (proctrack/linuxproc, task/none). `--cpus` may declare more CPUs than the machine has, so that
small jobs run side by side.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
PROGRAMS = ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "munged", "mungekey")
PARTITION = "debug"
DAEMONS = ("slurmd", "slurmctld", "munged")  # stopped in this order


class SlurmUnavailable(RuntimeError):
    """This machine cannot run a local SLURM (not root, no apt-get, or the packages would not install)."""


def ensure_installed() -> None:
    if all(shutil.which(p) for p in PROGRAMS):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SlurmUnavailable("SLURM is not installed and this user cannot install it (needs root and apt-get): "
                               f"install {' '.join(PACKAGES)}")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:  # package lists may be missing
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SlurmUnavailable(f"apt-get could not install {' '.join(PACKAGES)}: {done.stderr.strip()[-300:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def slurm_conf(folder: Path, host: str, cpus: int) -> str:
    return "\n".join([
        "ClusterName=local",
        f"SlurmctldHost={host}",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={folder}/munge/socket",
        "SlurmUser=root",
        f"StateSaveLocation={folder}/state",
        f"SlurmdSpoolDir={folder}/spool",
        f"SlurmctldPidFile={folder}/slurmctld.pid",
        f"SlurmdPidFile={folder}/slurmd.pid",
        f"SlurmctldLogFile={folder}/log/slurmctld.log",
        f"SlurmdLogFile={folder}/log/slurmd.log",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "MpiDefault=none",
        "ReturnToService=2",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "MinJobAge=3600",  # without accounting, scontrol is what tells how a job ended: keep ended jobs an hour
        "SlurmdParameters=config_overrides",  # --cpus may exceed what the machine has
        f"NodeName={host} CPUs={cpus} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def start(folder: Path, cpus: int | None = None, timeout: float = 30) -> dict[str, str]:
    """Install if needed, start MUNGE, slurmctld and slurmd in `folder`, wait until the node is idle; returns
    the environment that points SLURM's commands at this cluster."""
    ensure_installed()
    folder = folder.absolute()
    for sub in ("munge", "state", "spool", "log"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    (folder / "munge").chmod(0o711)  # munged refuses a key folder that others may write
    key = folder / "munge" / "munge.key"
    if not key.exists():
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True)
    munge = folder / "munge"
    subprocess.run(["munged", "--force", f"--socket={munge}/socket", f"--key-file={key}",
                    f"--pid-file={munge}/munged.pid", f"--log-file={munge}/munged.log",
                    f"--seed-file={munge}/seed"], check=True, capture_output=True)
    conf = folder / "slurm.conf"
    conf.write_text(slurm_conf(folder, socket.gethostname(), cpus or os.cpu_count() or 1))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    (folder / "slurmctld.started").write_text(f"{time.time()}\n")  # its time-limit checks follow from here
    for daemon in ("slurmctld", "slurmd"):
        subprocess.run([daemon, "-f", str(conf)], check=True, capture_output=True, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=env).stdout
        if state.strip() == "idle":
            return {"SLURM_CONF": str(conf)}
        time.sleep(0.2)
    stop(folder)
    raise SlurmUnavailable(f"the local SLURM node did not become idle in {timeout:.0f} s: see {folder}/log")


def stop(folder: Path, timeout: float = 15) -> None:
    """Cancel what still runs, then stop the daemons this folder's pid files name."""
    folder = folder.absolute()
    conf = folder / "slurm.conf"
    if conf.exists():
        subprocess.run(["scancel", "--full", "--user", str(os.geteuid())], capture_output=True,
                       env={**os.environ, "SLURM_CONF": str(conf)})
    for daemon in DAEMONS:
        pid_file = folder / "munge" / "munged.pid" if daemon == "munged" else folder / f"{daemon}.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError, IndexError):
            continue
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "install"])
    parser.add_argument("folder", type=Path, nargs="?", help="where the cluster keeps everything (start, stop)")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs the node declares (default: this machine's)")
    args = parser.parse_args(argv)
    if args.action != "install" and args.folder is None:
        parser.error(f"{args.action} needs the cluster's folder")
    try:
        if args.action == "install":
            ensure_installed()
        elif args.action == "start":
            print(f"export SLURM_CONF={start(args.folder, args.cpus)['SLURM_CONF']}")
        else:
            stop(args.folder)
    except (SlurmUnavailable, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
