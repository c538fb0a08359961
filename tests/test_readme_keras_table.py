"""README's "Coming from Keras" tables stay true: every name in the cnnkit column of the "same" and
"differs" tables resolves in cnnkit, and every name in the "not there yet" table does not."""

import pathlib
import re

import pytest

import cnnkit

README = (pathlib.Path(__file__).parent.parent / "README.md").read_text()


def _tables():
    section = README.split("## Coming from Keras", 1)[1].split("\n## ", 1)[0]
    tables, current = [], None
    for line in section.splitlines():
        if line.startswith("| Keras"):
            current = []
            tables.append(current)
        elif line.startswith("|") and not line.startswith("|---") and current is not None:
            current.append(line.strip("|").split("|")[-1])
        elif not line.startswith("|"):
            current = None
    return tables


def _names(cells):
    return [name for cell in cells for name in re.findall(r"`([A-Za-z_][\w.]*)`", cell)]


def _resolve(name):
    obj = cnnkit
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def test_the_section_has_three_tables():
    assert [len(t) > 0 for t in _tables()] == [True, True, True]


@pytest.mark.parametrize("name", _names(_tables()[0] + _tables()[1]))
def test_listed_names_exist(name):
    _resolve(name)


@pytest.mark.parametrize("name", _names(_tables()[2]))
def test_missing_names_are_missing(name):
    with pytest.raises(AttributeError):
        _resolve(name)
