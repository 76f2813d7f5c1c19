import pytest

from verilabel.errors import ConfigError
from verilabel.models.mapping import map_classes, parse_aliases

VOCAB = ("person", "car", "truck", "bus", "Traffic Light")


def fixed(classes=(), aliases=()):
    return map_classes(zero_shot=False, vocabulary=VOCAB, classes=list(classes), aliases=parse_aliases(list(aliases)))


def test_fixed_without_classes_uses_the_whole_vocabulary():
    mapping = fixed()
    assert mapping.model_classes == VOCAB
    assert dict(mapping.to_dataset) == {v: v for v in VOCAB}


def test_fixed_matches_exactly_then_case_insensitively():
    mapping = fixed(["CAR", "traffic light"])
    assert mapping.model_classes == ("car", "Traffic Light")


def test_aliases_map_many_model_classes_to_one_dataset_class():
    mapping = fixed(["person"], ["vehicle=car,truck,BUS"])
    assert dict(mapping.to_dataset) == {"person": "person", "car": "vehicle", "truck": "vehicle", "bus": "vehicle"}
    assert mapping.dataset_classes == ("person", "vehicle")


def test_unknown_fixed_class_lists_the_closest_names():
    with pytest.raises(ConfigError) as info:
        fixed(["persn"])
    assert info.value.field == "classes" and "person" in str(info.value)
    with pytest.raises(ConfigError) as info:
        fixed([], ["vehicle=carr"])
    assert info.value.field == "aliases" and "car" in str(info.value)


def test_zero_shot_needs_classes_and_prompts_alias_sources():
    with pytest.raises(ConfigError) as info:
        map_classes(zero_shot=True, vocabulary=(), classes=[], aliases={})
    assert info.value.field == "classes"
    mapping = map_classes(zero_shot=True, vocabulary=(), classes=["dog"], aliases={"vehicle": ["car", "van"]})
    assert mapping.model_classes == ("dog", "car", "van")
    assert mapping.to_dataset["van"] == "vehicle"


@pytest.mark.parametrize("bad", ["vehicle", "=car", "vehicle=", "vehicle=,"])
def test_bad_alias_syntax(bad):
    with pytest.raises(ConfigError) as info:
        parse_aliases([bad])
    assert info.value.field == "aliases" and "vehicle=car,truck" in str(info.value)


def test_duplicate_classes_are_rejected():
    with pytest.raises(ConfigError):
        fixed(["car", "car"])


def test_a_class_cannot_be_both_kept_and_aliased_elsewhere():
    with pytest.raises(ConfigError):
        fixed(["car"], ["vehicle=car"])
