"""torchrun with a graceful stop: python -m googlenet.launch [torchrun flags] train.py [overrides].

The same launcher as `torchrun`, except that a SIGTERM/SIGINT sent to it (what schedulers and Ctrl-C
do) ends with exit status 0 once the workers have stopped: torchrun forwards the signal, every worker
finishes its step and rank 0 writes last.pt, but torchrun itself re-raises the signal and exits 1, which
makes schedulers count a clean preemption as a failure.
"""
import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.run import main as torchrun_main


def main(argv=None) -> int:
    try:
        torchrun_main(argv)
    except SignalException as e:
        print(f"launcher: stopped by {e.sigval.name}; the workers wrote last.pt - rerun the same command with "
              "resume=auto to continue", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
