"""The public API: every listed name resolves, in a fresh process and in any order of first use."""

import subprocess
import sys

import pytest

import verilabel

PACKAGES = ("datasets", "review", "runs")


def test_every_public_name_resolves_and_is_listed():
    for name in verilabel.__all__:
        assert getattr(verilabel, name) is not None
    assert set(verilabel.__all__) == {*verilabel._EXPORTS, *verilabel._MODULES, "__version__"}


@pytest.mark.parametrize("package", PACKAGES)
def test_subpackage_facades_resolve_every_name_in_a_fresh_process_whatever_is_imported_first(package):
    """``vl.datasets.add_images`` once broke in a fresh process: the first ``vl.datasets`` handed out the service
    module, and importing it then rebound ``verilabel.datasets`` to the package, which lacked the functions."""
    script = f"""
import verilabel as vl
facade = vl.{package}
names = facade.__all__
assert names, "empty __all__"
for name in names:
    getattr(vl.{package}, name)          # first use imports the modules behind the facade
    assert getattr(vl.{package}, name) is getattr(facade, name), name
import verilabel.{package}.service       # a later import of a submodule changes nothing
assert vl.{package} is facade and all(hasattr(vl.{package}, n) for n in names)
assert set(dir(vl.{package})) >= set(names)
print("ok", len(names))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = verilabel.datasets.nope  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        _ = verilabel.nope  # type: ignore[attr-defined]
