"""Keep the memory of an idle connection small (thousands of IMAP IDLE clients).

Two process-wide settings, applied once by :func:`app.start`, each because a
measured default cost far more than the connection needs
(bench/mail_access.py, 2,000 IDLE connections over TLS):

* asyncio gives every TLS connection a 256 KiB buffer for decrypted reads
  (``SSLProtocol.max_size``); one TLS record is at most 16 KiB (RFC 8446
  §5.1), so a 16 KiB buffer reads as much per call that matters;
* glibc raises its mmap threshold after the first free of a large block, so
  the 16 MiB that each scrypt password check allocates then stays in the
  thread's heap arena for good, one arena per executor thread. A fixed
  threshold keeps such blocks in mmap, returned to the system on free.
"""

from __future__ import annotations

import asyncio.sslproto
import ctypes
import ctypes.util

TLS_READ_BUFFER = 16 * 1024
# glibc malloc.h: M_MMAP_THRESHOLD; 128 KiB is its initial value.
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 128 * 1024

_applied = False


def limit_idle_memory() -> None:
    """Apply both settings (idempotent; a no-op where they do not exist)."""
    global _applied
    if _applied:
        return
    _applied = True
    protocol = getattr(asyncio.sslproto, "SSLProtocol", None)
    if protocol is not None and getattr(protocol, "max_size", 0) > TLS_READ_BUFFER:
        protocol.max_size = TLS_READ_BUFFER
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    try:
        libc = ctypes.CDLL(libc_name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return  # not glibc (musl has no mallopt thresholds)
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
