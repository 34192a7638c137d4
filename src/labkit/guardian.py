"""Run a server command and make sure it cannot outlive the process that started it.

    python -m labkit.guardian PARENT_PID -- COMMAND...

The guardian starts COMMAND in its own process group (which ``ManagedServer`` created)
and waits for it. If PARENT_PID goes away (a notebook kernel that was killed, a crashed
test run), it stops the whole group: SIGTERM, then SIGKILL. A SIGTERM sent to the group is
survived by the guardian itself, so it can report the server's own exit code.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    parent, command = int(argv[0]), argv[argv.index("--") + 1:]
    signal.signal(signal.SIGTERM, lambda *_: None)  # the server gets it too; we wait for it to exit
    server = subprocess.Popen(command)
    while server.poll() is None:
        if os.getppid() != parent:  # orphaned: the starter is gone
            os.killpg(os.getpgrp(), signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(os.getpgrp(), signal.SIGKILL)
            return 1
        time.sleep(0.5)
    return server.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
