"""Running a credential program, and what one may cost: bounded output, time and count.

Docker credential helpers and kubelet credential provider plugins
(:mod:`controller.registry.helpers`) are programs a lookup starts. Each run is
read a chunk at a time and killed, with its process group, at
:data:`MAX_OUTPUT` bytes, at :data:`EXEC_TIMEOUT` seconds or when its lookup is
abandoned; at most :data:`MAX_CONCURRENT_PROGRAMS` run at once in the process;
and each is charged to the review that started it (:func:`processes_charged_to`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Protocol

from controller.errors import LookupFailed

#: How long one helper or plugin may run.
EXEC_TIMEOUT = 10.0
#: The most a helper or plugin may print (an answer is a few hundred bytes).
MAX_OUTPUT = 1024 * 1024

# ------------------------------------------------------------------ running a program


class ProgramFailed(Exception):
    """A helper or plugin did not answer usably: killed at a limit, timed out, not started."""


#: Programs (Docker helpers and plugins together) running at once in this process.
MAX_CONCURRENT_PROGRAMS = 4
_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def program_slots() -> asyncio.Semaphore:
    """The process-wide cap on programs running at once (one semaphore per event loop).

    Every client, every review and every tenant shares it: however many
    lookups need a plugin, at most :data:`MAX_CONCURRENT_PROGRAMS` processes
    exist at a time, the rest wait their turn (within their review's deadline).
    """
    loop = asyncio.get_running_loop()
    slots = _SLOTS.get(loop)
    if slots is None:
        slots = _SLOTS[loop] = asyncio.Semaphore(MAX_CONCURRENT_PROGRAMS)
    return slots


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the program's process group: the program and whatever it started."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


async def _exchange(proc: asyncio.subprocess.Process, stdin: bytes, limit: int, what: str) -> bytes:
    """Feed ``stdin``, read stdout a chunk at a time; :class:`ProgramFailed` past ``limit`` bytes."""
    assert proc.stdin is not None and proc.stdout is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.write(stdin)
        await proc.stdin.drain()
    proc.stdin.close()
    chunks: list[bytes] = []
    size = 0
    while chunk := await proc.stdout.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ProgramFailed(f"{what} printed more than {limit} bytes; it was killed")
        chunks.append(chunk)
    return b"".join(chunks)


async def run_program(
    argv: Sequence[str],
    stdin: bytes,
    *,
    env: Mapping[str, str] | None,
    what: str,
    limit: int = MAX_OUTPUT,
    time_limit: float = EXEC_TIMEOUT,
) -> tuple[int, bytes]:
    """(exit status, stdout) of ``argv`` fed ``stdin``, within the process-wide cap on programs.

    The output is read as it comes and the program is killed (its whole process
    group: a plugin's children too) the moment it passes ``limit`` bytes, when it
    runs past ``time_limit`` seconds, or when the lookup that needed it is
    abandoned: a program printing gigabytes costs a few chunks of memory, never
    its output. :class:`ProgramFailed` says which limit it hit.
    """
    seconds = time_limit
    async with program_slots():
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
        try:
            try:
                async with asyncio.timeout(seconds):
                    out = await _exchange(proc, stdin, limit, what)
                    status = await proc.wait()
            except TimeoutError:
                raise ProgramFailed(f"{what} did not answer within {seconds:g}s; it was killed") from None
        finally:
            _kill_group(proc)
            with contextlib.suppress(BaseException):
                await asyncio.shield(proc.wait())
    return status, out



# ------------------------------------------------------------------ what a review pays


class ProcessAccount(Protocol):
    """What a helper or plugin run is charged to: the review that needed it."""

    def charge_process(self, program: str) -> None:
        """Count one program started; raise :class:`ProcessLimitReached` once none may be."""


class ProcessLimitReached(LookupFailed):
    """The review that asked may start no more programs; its message names the bound.

    It belongs to that review alone: the registry client never remembers it as
    the answer for the image (another review has budget of its own).
    """


_ACCOUNT: ContextVar[ProcessAccount | None] = ContextVar("baseguard_process_account", default=None)


@contextlib.contextmanager
def processes_charged_to(account: ProcessAccount | None) -> Iterator[None]:
    """Programs started inside (and in tasks started inside) count against ``account``.

    A context variable, like the registry tenant: the run happens deep inside
    the registry client, which knows nothing of reviews; a run shared by several
    lookups is paid by the lookup that started it.
    """
    token = _ACCOUNT.set(account)
    try:
        yield
    finally:
        _ACCOUNT.reset(token)


def charge_program(program: str) -> None:
    """Count one run of ``program`` against the review whose lookup starts it (if any)."""
    account = _ACCOUNT.get()
    if account is not None:
        account.charge_process(program)
