"""Watch the directory's full password checks (the scrypt ones) from a test."""

from __future__ import annotations

import pytest

from mailstead import directory as directory_module


def record_full_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords that go through the full check from now on, in order."""
    seen: list[str] = []
    real = directory_module.verify_password

    def recording(password: str, encoded: str) -> bool:
        seen.append(password)
        return real(password, encoded)

    monkeypatch.setattr(directory_module, "verify_password", recording)
    return seen
