import sys
from pathlib import Path

import pytest

from takefive.loader import LoadError, load_object


def test_loads_attribute_from_file(tmp_path: Path) -> None:
    (tmp_path / "helper_mod.py").write_text("VALUE = 41\n")
    (tmp_path / "svc.py").write_text(
        "import helper_mod\nclass NS:\n    value = helper_mod.VALUE + 1\n"
    )
    assert load_object(f"{tmp_path / 'svc.py'}:NS.value") == 42


def test_loads_dotted_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "pkg_for_loader"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "web.py").write_text("app = 'the app'\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert load_object("pkg_for_loader.web:app") == "the app"


@pytest.mark.parametrize("ref", ["noattr", "mod:", ":app", ""])
def test_rejects_malformed_reference(ref: str) -> None:
    with pytest.raises(LoadError, match="MODULE:ATTR"):
        load_object(ref)


def test_missing_file_module_and_attribute(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="no such file"):
        load_object(f"{tmp_path / 'nope.py'}:app")
    with pytest.raises(LoadError, match="no module named"):
        load_object("takefive_no_such_module_xyz:app")
    (tmp_path / "empty_mod.py").write_text("")
    with pytest.raises(LoadError, match="no attribute"):
        load_object(f"{tmp_path / 'empty_mod.py'}:app")


def test_import_error_inside_module_is_not_hidden(tmp_path: Path) -> None:
    (tmp_path / "broken_mod.py").write_text("import takefive_missing_dependency_xyz\n")
    with pytest.raises(ModuleNotFoundError, match="takefive_missing_dependency_xyz"):
        load_object(f"{tmp_path / 'broken_mod.py'}:app")
