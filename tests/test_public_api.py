import verilabel


def test_every_public_name_resolves_and_is_listed():
    for name in verilabel.__all__:
        assert getattr(verilabel, name) is not None
    assert set(verilabel.__all__) == {*verilabel._EXPORTS, *verilabel._MODULES, "__version__"}
