"""Without its framework, an adapter says which extra to install."""

from __future__ import annotations

import importlib
import sys

import pytest


@pytest.mark.parametrize(
    ("adapter", "framework", "extra"),
    [
        ("django", "django", "django"),
        ("flask", "flask", "flask"),
        ("tornado", "tornado", "tornado"),
    ],
)
def test_missing_framework_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, adapter: str, framework: str, extra: str
) -> None:
    module = f"mailstead.webhooks.adapters.{adapter}"
    monkeypatch.delitem(sys.modules, module, raising=False)
    for name in list(sys.modules):
        if name == framework or name.startswith(framework + "."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, framework, None)  # None: "import fails"
    with pytest.raises(ImportError, match=rf"pip install 'mailstead\[{extra}\]'"):
        importlib.import_module(module)
