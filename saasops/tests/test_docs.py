"""The README documents every environment variable the app reads."""

from pathlib import Path

from saasops.env import VARIABLES

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_variable_is_in_readme():
    missing = [v.name for v in VARIABLES if f"`{v.name}`" not in README]
    assert missing == []


def test_readme_shows_the_two_commands():
    assert "make run" in README and "make test" in README
