"""The watcher of one step: a tiny process between the runner and the step, so that every process of the step
dies with the runner, whatever kills the runner.

    python -S fastload/stepwatch.py FD EXIT_FILE GRACE_S -- ARGV...

The runner starts it with the read end FD of a pipe whose write end only the runner holds. The watcher starts
ARGV in a process group of its own and makes itself the child subreaper (PR_SET_CHILD_SUBREAPER), so every
process the step starts stays its descendant, even one that leaves the group (torchrun starts its workers in new
sessions) or whose parent died. Then:
- the pipe reads EOF (the runner died, even by SIGKILL, or gave up waiting): SIGKILL to every descendant, at once;
- SIGTERM (the runner stops the step: Ctrl-C, scancel): SIGTERM to the step's group, SIGKILL to every descendant
  GRACE_S later, done here whatever happens to the runner meanwhile (a second Ctrl-C cannot cancel it);
- the step's own process exits: its exit status goes to EXIT_FILE (JSON, written by rename), what it left running
  is killed, and the watcher exits with the step's status (128 + N for a signal N, as a shell reports it).
EXIT_FILE lets a restarted runner record a step that finished just as the runner died instead of running it again.

Standard library only, run with -S: it starts in a few milliseconds and imports nothing of fastload.
"""
import ctypes
import json
import os
import select
import signal
import sys
import time

PR_SET_PDEATHSIG = 1        # <linux/prctl.h>
PR_SET_CHILD_SUBREAPER = 36
POLL_S = 0.05


def prctl(option: int, value: int) -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def die_with_parent(sig: int, parent_pid: int = None) -> None:
    """In a child process: receive `sig` when the parent dies, even by SIGKILL (Linux PR_SET_PDEATHSIG). The one
    home of this rule: the step watcher's step and the beton writer's workers both use it. With `parent_pid`,
    exit at once when the parent already died before the request took effect (the child was orphaned first)."""
    prctl(PR_SET_PDEATHSIG, int(sig))
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def start(argv: list, pipe_fd: int) -> int:
    """Fork and exec `argv` as the leader of a new process group; returns its pid."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)
            os.close(pipe_fd)
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            die_with_parent(signal.SIGKILL)  # the watcher killed (-9): its step goes too
            os.execvp(argv[0], argv)
        except OSError as e:
            os.write(2, f"command not found: {argv[0]} ({e.strerror})\n".encode())
        os._exit(127)
    try:
        os.setpgid(pid, pid)  # also here, so that the group exists before any killpg below
    except OSError:
        pass  # the child set it already, or has exec'ed
    return pid


def parent_of(pid: str):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def descendants() -> list:
    """Pids of every process below this one (/proc: as subreaper, orphans of the step are our children)."""
    me, children = os.getpid(), {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            children.setdefault(parent_of(entry), []).append(int(entry))
    out, todo = [], [me]
    while todo:
        for child in children.get(todo.pop(), ()):
            out.append(child)
            todo.append(child)
    return out


def reap() -> dict:
    """Collect every child that has exited: {pid: exit code}."""
    done = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done[pid] = os.waitstatus_to_exitcode(status)


def kill_everything(group: int, deadline_s: float = 10.0) -> None:
    """SIGKILL to the step's group and to every descendant, again until none is left (a process forking as it is
    killed, orphans reparented to us)."""
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        left = descendants() if os.path.isdir("/proc") else []
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)
        reap()


def write_exit(path: str, returncode: int, started: float) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump({"token": os.environ.get("FASTLOAD_STEP_TOKEN"), "returncode": returncode,
                   "wall_s": round(time.time() - started, 3)}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def watch(pipe_fd: int, exit_file: str, grace_s: float, argv: list) -> int:
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    stop_asked = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stop_asked.append(time.monotonic()))
    signal.signal(signal.SIGINT, lambda signum, frame: None)  # Ctrl-C is the runner's to handle
    started = time.time()
    step = start(argv, pipe_fd)
    termed = False
    while True:
        status = reap().get(step)
        if status is not None:
            write_exit(exit_file, status, started)
            kill_everything(step)  # what the step left behind dies with it
            return status if status >= 0 else 128 - status
        if stop_asked and not termed:
            termed = True
            try:
                os.killpg(step, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if stop_asked and time.monotonic() - stop_asked[0] > grace_s:
            kill_everything(step)
        readable, _, _ = select.select([pipe_fd], [], [], POLL_S)
        if readable and os.read(pipe_fd, 1) == b"":  # the runner is gone
            kill_everything(step)
            return 128 + signal.SIGKILL


def main(args: list) -> int:
    if len(args) < 5 or args[3] != "--":
        os.write(2, b"usage: python -S stepwatch.py FD EXIT_FILE GRACE_S -- ARGV...\n")
        return 2
    return watch(int(args[0]), args[1], float(args[2]), args[4:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
