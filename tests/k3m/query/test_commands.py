"""Every `k3m query` script and `k3m embed` has --help and --json."""
from __future__ import annotations

import pytest

from k3m.cli import main


@pytest.mark.parametrize("command", [["embed"], ["query", "similar"], ["query", "complete"], ["query", "export"],
                                     ["kg", "cypher"]])
def test_help_and_json_flag(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: k3m {' '.join(command)}") and "--json" in text


def test_query_lists_its_scripts(capsys):
    with pytest.raises(SystemExit):
        main(["query", "--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in ("similar", "complete", "export"))


def test_free_cypher_is_one_command(capsys):
    """`k3m kg cypher` is the one free-Cypher command; `k3m query cypher` is gone."""
    with pytest.raises(SystemExit) as exit_:
        main(["query", "cypher", "RETURN 1"])
    assert exit_.value.code == 2 and "invalid choice: 'cypher'" in capsys.readouterr().err
