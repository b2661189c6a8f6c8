from typer.testing import CliRunner

from evomerge.cli.zoo_cmd import zoo_app


def test_zoo_build_prints_where_the_zoo_is(nano_zoo):
    cache_dir = nano_zoo.root.parent.parent  # the session's zoo: served from the cache
    result = CliRunner().invoke(zoo_app, ["build", "--size", "nano", "--seed", "0",
                                          "--cache-dir", str(cache_dir)])
    assert result.exit_code == 0, result.output
    assert str(nano_zoo.root) in result.output
    assert "zoo_skills_search" in result.output and "rev" in result.output


def test_zoo_build_rejects_an_unknown_size(tmp_path):
    result = CliRunner().invoke(zoo_app, ["build", "--size", "huge", "--cache-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "nano, small" in result.output
