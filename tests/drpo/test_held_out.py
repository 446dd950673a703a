"""The held-out queries of `--validate N` and `--val FILE` (drpo/held_out.py), and the flags of the
noisy-judge options: split before the search, refused with one line when they cannot be had."""

from __future__ import annotations

import pytest

from drpo.cli import main
from drpo.cli_config import build_config
from drpo.cli_parser import build_parser
from drpo.datasets import TrainQuery
from drpo.errors import UserInputError
from drpo.held_out import hold_out, split_stream
from schemas.config import SearchConfig


def stream(*texts: str) -> list[TrainQuery]:
    return [TrainQuery(query=t) for t in texts]


def texts(queries: list[TrainQuery]) -> list[str]:
    return [q.query for q in queries]


def test_the_last_n_of_the_seeded_order_are_held_out_and_no_copy_stays_in_training():
    training, held = split_stream(stream("a", "b", "c", "d", "B ", "e"), 2)  # "b" again, spelled otherwise
    assert texts(held) == ["B ", "e"]
    assert texts(training) == ["a", "c", "d"]  # its earlier copy left the training stream too
    assert split_stream(stream("a", "b"), 0) == (stream("a", "b"), [])


def test_holding_out_all_but_one_query_is_one_clear_line():
    with pytest.raises(UserInputError, match=r"^--validate 2: the training stream has only 3 queries") as raised:
        split_stream(stream("a", "b", "c"), 2)
    assert "\n" not in str(raised.value)


def test_a_held_out_file_gives_its_first_n_or_all_and_may_share_no_query_with_training(tmp_path):
    val = tmp_path / "val.txt"
    val.write_text("x?\ny?\nz?\n")
    ordered = stream("a?", "b?", "c?")
    assert [texts(part) for part in hold_out(ordered, SearchConfig(validation=2, validation_file=str(val)))] == [
        ["a?", "b?", "c?"], ["x?", "y?"]]  # the training stream keeps every query
    assert texts(hold_out(ordered, SearchConfig(validation_file=str(val)))[1]) == ["x?", "y?", "z?"]
    with pytest.raises(UserInputError, match=r"^--val .*val.txt: 3 queries, but --validate 4 asks for 4"):
        hold_out(ordered, SearchConfig(validation=4, validation_file=str(val)))
    val.write_text("x?\n  B?\n")
    with pytest.raises(UserInputError, match=r"^--val .*: 1 of its queries are also training queries \(e.g. 'B\?'\)"):
        hold_out(ordered, SearchConfig(validation_file=str(val)))


def test_a_missing_held_out_file_is_named_with_its_flag(tmp_path):
    with pytest.raises(UserInputError, match=r"^--val .*nothing.txt: no such file"):
        hold_out(stream("a", "b"), SearchConfig(validation_file=str(tmp_path / "nothing.txt")))


def config_of(*argv: str):  # type: ignore[no-untyped-def]
    return build_config(build_parser().parse_args(["optimize", *argv]))


def test_the_flags_reach_the_search_config(tmp_path):
    search = config_of("--judge-samples", "3", "--validate", "4", "--validate-levels", "--val",
                       str(tmp_path / "v.txt"), "--selector", "lcb", "--panel-on-demand", "2").search
    assert (search.judge_samples, search.validation, search.validate_levels, search.selector) == (3, 4, True, "lcb")
    assert search.panel_on_demand == 2
    assert search.validation_file == str(tmp_path / "v.txt")
    assert config_of().search == SearchConfig()  # without them: the paper's


def test_a_file_s_validate_levels_is_kept_when_the_flag_is_not_given(tmp_path):
    settings = tmp_path / "s.toml"
    settings.write_text("[search]\nvalidation = 2\nvalidate_levels = true\n")
    assert config_of("--config", str(settings)).search.validate_levels is True


@pytest.mark.parametrize(("argv", "expected"), [
    (["--validate-levels"], "validate_levels needs held-out queries"),
    (["--validate", "0"], "--validate must be at least 1"),
    (["--judge-samples", "0"], "--judge-samples must be at least 1"),
    (["--panel-on-demand", "0"], "--panel-on-demand must be at least 1"),
    (["--panel-on-demand", "2", "--queries-per-level", "2"], "panel_on_demand re-judges a candidate's one answer"),
])
def test_bad_noisy_judge_flags_are_one_line_with_exit_code_2(argv, expected, tmp_path, capsys):
    assert main(["optimize", "--dry-run", "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and expected in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_dry_run_shows_what_the_options_add_and_nothing_without_them(tmp_path, capsys):
    assert main(["optimize", "--dry-run", "--depth", "4", "--out", str(tmp_path / "out")]) == 0
    plain = capsys.readouterr().out
    assert "options beyond" not in plain
    assert main(["optimize", "--dry-run", "--depth", "4", "--judge-samples", "2", "--validate", "3",
                 "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(plain)  # the paper's table first, unchanged
    assert "each answer judged 2 times (2 samples x 1 judge)" in printed
    assert "the final beam validated on 3 held-out queries" in printed
    # D=4, B=2, A=3: 41 calls, 16 of them judgements (+16); validation 3 + 2 x 3 x (1 + 2) = 21
    assert any(line.split()[:7] == ["no", "skips", "41", "16", "21", "78", "1.90x"] for line in printed.splitlines())
    assert not (tmp_path / "out").exists()


def test_dry_run_refuses_a_validation_the_stream_cannot_spare(tmp_path, capsys):
    queries = tmp_path / "q.txt"
    queries.write_text("a?\nb?\nc?\n")
    assert main(["optimize", "--dry-run", "--train", str(queries), "--validate", "2"]) == 2
    assert "--validate 2: the training stream has only 3 queries" in capsys.readouterr().err


def test_a_panel_config_names_its_members_in_the_dry_run(tmp_path, capsys):
    settings = tmp_path / "panel.toml"
    settings.write_text('[backends.default]\nkind = "openai"\nmodel = "m"\n[backends.a]\nkind = "openai"\n'
                        'model = "ja"\n[backends.b]\nkind = "openai"\nmodel = "jb"\n[roles.judge]\n'
                        'backends = ["a", "b"]\n')
    assert main(["optimize", "--dry-run", "--depth", "4", "--config", str(settings)]) == 0
    assert "each answer judged 2 times (1 sample x 2 judges)" in capsys.readouterr().out
    settings.write_text(settings.read_text().replace('["a", "b"]', '["a", "c"]'))
    assert main(["optimize", "--dry-run", "--config", str(settings)]) == 2
    assert "backends names 'c', which is not defined under [backends]" in capsys.readouterr().err


def test_dry_run_projects_a_panel_on_demand_below_the_whole_panel(tmp_path, capsys):
    argv = ["optimize", "--dry-run", "--depth", "4", "--judge-samples", "2", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    whole = capsys.readouterr().out
    assert main([*argv, "--panel-on-demand", "1"]) == 0
    printed = capsys.readouterr().out
    assert "on demand: the first call for every answer, the rest for the 1 best of each level" in printed
    # D=4, B=2, A=3: 16 judgements; on demand the root's and 3 a level (K + B), at most every candidate's
    assert any(line.split()[:4] == ["no", "skips", "41", "16"] for line in whole.splitlines())
    assert any(line.split()[:4] == ["no", "skips", "41", "10"] for line in printed.splitlines())
