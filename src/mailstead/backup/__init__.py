"""Backups of a data directory taken while serving, and restoring them (docs/backup.md).

:mod:`.take` copies (databases first, then the files they point at, the
manifest last), :mod:`.manifest` describes and checks a backup,
:mod:`.restore` verifies and writes one back, settling what changed while
it was taken, and :mod:`.serving` tells whether a server still uses the
data directory a restore would replace.
"""

from mailstead.backup.manifest import BackupError, FileEntry, Manifest, read_manifest
from mailstead.backup.restore import Restored, restore_backup, verify_backup
from mailstead.backup.serving import serving_evidence
from mailstead.backup.take import take_backup

__all__ = [
    "BackupError",
    "FileEntry",
    "Manifest",
    "Restored",
    "read_manifest",
    "restore_backup",
    "serving_evidence",
    "take_backup",
    "verify_backup",
]
