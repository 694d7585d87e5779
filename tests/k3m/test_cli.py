"""The `k3m` command's one error report: user errors exit 2 in one line, runtime failures 1,
anything else is a bug that says so (exit 1) and shows its traceback with K3M_DEBUG=1."""
from __future__ import annotations

import pytest

from etl.errors import InvalidValue, NotFound, UserError
from k3m.cli import main, run_command


def _raise(exc):
    def func(args):
        raise exc
    return func


def test_user_errors_exit_2_in_one_line(capsys):
    for exc in (UserError("bad thing"), InvalidValue("--k must be positive"), NotFound("item 'x' is not there"),
                FileNotFoundError("no config file x.yaml")):
        assert run_command("k3m x", _raise(exc), None) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("k3m x: error: ") and "Traceback" not in err
    assert capsys.readouterr().err == ""
    run_command("k3m x", _raise(NotFound("item 'x' is not there")), None)
    assert capsys.readouterr().err == "k3m x: error: item 'x' is not there\n"  # not the KeyError repr


def test_a_bug_is_not_dressed_up_as_a_user_error(capsys, monkeypatch):
    monkeypatch.delenv("K3M_DEBUG", raising=False)
    for exc in (IndexError("list index out of range"), ValueError("operands could not be broadcast"), KeyError("k")):
        assert run_command("k3m embed", _raise(exc), None) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"k3m embed: internal error: {type(exc).__name__}: ") and "K3M_DEBUG=1" in err
        assert err.count("\n") == 1
    monkeypatch.setenv("K3M_DEBUG", "1")
    with pytest.raises(IndexError):
        run_command("k3m embed", _raise(IndexError("deep")), None)


def test_runtime_failures_exit_1(capsys):
    assert run_command("k3m kg", _raise(RuntimeError("the server went away")), None) == 1
    assert capsys.readouterr().err == "k3m kg: error: the server went away\n"


def test_user_mistakes_on_real_commands_still_exit_2(capsys, fashion_slice_build, tmp_path):
    """Cases that used to reach exit 2 as plain ValueErrors."""
    assert main(["kg", "cypher", "RETURN 1", "--param", "novalue"]) == 2
    assert main(["import", "x.csv", "--mapping", "fashion44k", "--out", str(tmp_path / "o"), "--limit", "0"]) == 2
    assert main(["kg", "load", str(fashion_slice_build), "--rdf", "--base-iri", "not an iri/",
                 "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 3 and "internal error" not in err


def test_bad_numbers_are_user_errors_before_any_work(capsys, fashion_slice_build, micro_checkpoint, tmp_path):
    """They used to surface as a ValueError deep in the code (now a bug's exit 1) or to be
    read as the default (0)."""
    base = ["embed", "--checkpoint", str(micro_checkpoint), str(fashion_slice_build), "--data-dir", str(tmp_path)]
    assert main(base + ["--batch-size", "0"]) == 2
    assert capsys.readouterr().err == "k3m embed: error: batch size must be positive, got 0\n"
    assert main(base + ["--write-batch", "0"]) == 2
    assert capsys.readouterr().err == ("k3m embed: error: the write-back's batch size and workers must be positive, "
                                       "got 0 and 2\n")
    assert not (fashion_slice_build / "embeddings").exists() or not any((fashion_slice_build / "embeddings").iterdir())
    assert main(["kg", "load", str(fashion_slice_build), "--graph", "--items-per-batch", "-3",
                 "--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "k3m kg: error: items per batch must be positive, got -3\n"
