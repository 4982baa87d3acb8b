"""Our warnings reach the user as one ``warning: ...`` line; other libraries' keep Python's format."""
from __future__ import annotations

from mtcnn_train.cli import _show_warning
from mtcnn_train.errors import MtcnnWarning


def test_our_warnings_are_one_line(capsys):
    _show_warning(MtcnnWarning("runs/x: something to know"), MtcnnWarning, "cascade.py", 12)
    assert capsys.readouterr().err == "warning: runs/x: something to know\n"


def test_other_warnings_keep_python_format(capsys, monkeypatch):
    import mtcnn_train.cli as cli_module

    shown = []
    monkeypatch.setattr(cli_module, "_python_show_warning", lambda *args: shown.append(args))
    _show_warning(UserWarning("from torch"), UserWarning, "torch.py", 3)
    assert capsys.readouterr().err == "" and shown and shown[0][1] is UserWarning
