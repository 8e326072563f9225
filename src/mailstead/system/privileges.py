"""Leaving root after the ports are bound: the ``[run]`` account, no capabilities.

``serve`` started as root binds its sockets, then calls :func:`become`
before any network input is read and before forking, so every worker and
the webhook dispatcher are the ``[run]`` user, with its group as the only
group. Started without root but with ``CAP_NET_BIND_SERVICE`` (systemd's
``AmbientCapabilities=``), the capability is dropped the same way once the
ports are bound: nothing after that needs it.
"""

from __future__ import annotations

import ctypes
import grp
import logging
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from mailstead.config import RunConfig

__all__ = [
    "Account",
    "PrivilegeError",
    "account",
    "become",
    "become_data_owner",
    "drop_capabilities",
    "give_data_dir",
]

log = logging.getLogger("mailstead")

# linux/prctl.h and linux/capability.h
_PR_SET_KEEPCAPS = 8
_CAP_DAC_READ_SEARCH = 2
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAPABILITY_VERSION_3 = 0x20080522


class PrivilegeError(Exception):
    """The server cannot become the ``[run]`` account, or would stay root (one line)."""


@dataclass(frozen=True, slots=True)
class Account:
    """The user and group the server continues as."""

    user: str
    uid: int
    group: str
    gid: int


def account(run: RunConfig) -> Account:
    """The ``[run]`` user and group, looked up in the system's databases."""
    try:
        entry = pwd.getpwuid(int(run.user)) if run.user.isdigit() else pwd.getpwnam(run.user)
    except KeyError:
        raise PrivilegeError(
            f"run.user {run.user}: no such user (create it with `useradd --system "
            f"--user-group {run.user}` or `mailstead init --system`, or set [run] user)"
        ) from None
    try:
        group = grp.getgrgid(int(run.group)) if run.group.isdigit() else grp.getgrnam(run.group)
    except KeyError:
        raise PrivilegeError(f"run.group {run.group}: no such group") from None
    return Account(entry.pw_name, entry.pw_uid, group.gr_name, group.gr_gid)


def become(run: RunConfig) -> str:
    """Switch this process to the ``[run]`` account if it is root; say what it runs as.

    Raises PrivilegeError when it would stay root without ``allow_root``.
    """
    if os.geteuid() != 0:
        drop_capabilities()
        return f"running as uid {os.getuid()} without capabilities"
    if run.allow_root:
        log.warning("running as root: [run] allow_root = true")
        return "running as root ([run] allow_root = true)"
    target = account(run)
    if target.uid == 0 or target.gid == 0:
        raise PrivilegeError(
            f"run.user {run.user} / run.group {run.group}: refusing to keep running as root "
            "(name an unprivileged account, or set [run] allow_root = true)"
        )
    # Groups first: once the uid changes, changing them is no longer allowed.
    os.setgroups([])
    os.setresgid(target.gid, target.gid, target.gid)
    # Without SECBIT_KEEP_CAPS, leaving uid 0 clears every capability set.
    os.setresuid(target.uid, target.uid, target.uid)
    if os.getresuid() != (target.uid,) * 3 or os.getgroups() not in ([], [target.gid]):
        raise PrivilegeError(f"could not switch to {target.user}:{target.group}")
    return f"running as {target.user}:{target.group} (uid {target.uid}, gid {target.gid})"


def become_data_owner(data_dir: Path) -> bool:
    """As root, continue as the account that owns ``data_dir``; say whether it switched.

    A command run by root on a served data directory (``user add``,
    ``dns-records`` making a DKIM key, ``queue delete``) would otherwise leave
    files only root can write, and the server, which is not root, then fails
    on them (a DKIM key directory it cannot enter stopped every worker). So
    the command goes on as the owner, as ``doveadm`` and ``postsuper`` do,
    keeping only ``CAP_DAC_READ_SEARCH``: it still reads what root could (a
    Python installed under /root, a backup only root may read), and whatever
    it writes is the owner's. A data directory that does not exist yet, or
    that root owns, leaves the process as it is.
    """
    if os.geteuid() != 0:
        return False
    try:
        st = os.stat(data_dir)
    except FileNotFoundError:
        return False
    if st.st_uid == 0:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    # Keep the permitted set across the uid change, then narrow it to one.
    if libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0:
        raise PrivilegeError(f"cannot keep capabilities: {os.strerror(ctypes.get_errno())}")
    os.setgroups([])
    os.setresgid(st.st_gid, st.st_gid, st.st_gid)
    os.setresuid(st.st_uid, st.st_uid, st.st_uid)
    _set_capabilities(libc, 1 << _CAP_DAC_READ_SEARCH)
    libc.prctl(_PR_SET_KEEPCAPS, 0, 0, 0, 0)
    return True


def drop_capabilities() -> None:
    """Give up every capability: the ambient, permitted and effective sets end empty."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    _set_capabilities(libc, 0)


def _set_capabilities(libc: ctypes.CDLL, mask: int) -> None:
    """Make the effective and permitted sets ``mask`` (capabilities 0-31), none inheritable."""
    header = (ctypes.c_uint32 * 2)(_CAPABILITY_VERSION_3, 0)
    # Two {effective, permitted, inheritable} triples: capabilities 0-31, then 32-63.
    data = (ctypes.c_uint32 * 6)(mask, mask, 0, 0, 0, 0)
    if libc.capset(header, data) != 0:  # lowering capabilities is always allowed
        errno = ctypes.get_errno()
        raise PrivilegeError(f"cannot set capabilities: {os.strerror(errno)}")


def give_data_dir(data_dir: Path, owner: Account, *, whole: bool = False) -> int:
    """Make the data directory the ``[run]`` account's; return how many entries changed.

    A data directory root made (``init`` as root), or any with ``whole`` (a
    restore root just wrote), is handed over whole. One already the
    account's only has its top level looked at, where a command run as root
    may have left a database's ``-wal`` or ``-shm`` file. A file with more
    than one link is never touched: it could be a link to a file outside the
    directory.
    """
    st = os.lstat(data_dir)
    if st.st_uid == owner.uid and st.st_gid == owner.gid and not whole:
        names = (data_dir / name for name in os.listdir(data_dir))
        return sum(_give(path, owner) for path in names)
    if st.st_uid not in (0, owner.uid):
        raise PrivilegeError(
            f"data_dir {data_dir} belongs to uid {st.st_uid}, not {owner.user} "
            f"(chown -R {owner.user}:{owner.group} {data_dir})"
        )
    changed = _give(data_dir, owner)
    for top, dirs, files in os.walk(data_dir):
        for name in (*dirs, *files):
            changed += _give(Path(top, name), owner)
    return changed


def _give(path: Path, owner: Account) -> int:
    st = os.lstat(path)
    if (st.st_uid, st.st_gid) == (owner.uid, owner.gid) or stat.S_ISLNK(st.st_mode):
        return 0
    if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
        log.warning("not changing the owner of %s: it has %d links", path, st.st_nlink)
        return 0
    os.chown(path, owner.uid, owner.gid, follow_symlinks=False)
    return 1
