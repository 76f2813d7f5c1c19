import pytest

from verilabel.errors import ConfigError
from verilabel.labels import Box, Classification, Detection
from verilabel.models.mapping import map_classes, parse_aliases, parse_negatives, to_dataset_labels

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


# --- synonyms and negatives -----------------------------------------------------------------------------------
def zero_shot(classes=(), aliases=(), negatives=()):
    return map_classes(
        zero_shot=True, vocabulary=(), classes=list(classes), aliases=parse_aliases(list(aliases)), negatives=negatives
    )


def box(label, x, confidence, w=0.2):
    return Detection(label, Box(x, 0.1, w, 0.3), confidence)


def test_negatives_are_asked_for_last_and_never_stored():
    mapping = zero_shot(["cat"], ["dog=dog,puppy"], parse_negatives(["toy dog, plush dog", "toy dog"]))
    assert mapping.model_classes == ("cat", "dog", "puppy", "toy dog", "plush dog")
    assert mapping.negatives == ("toy dog", "plush dog") and "toy dog" not in mapping.to_dataset
    with pytest.raises(ConfigError, match="puppy asked for both as a class and as a negative") as caught:
        zero_shot(["cat"], ["dog=dog,puppy"], ["puppy"])
    assert caught.value.field == "negatives"


def test_fixed_vocabulary_negatives_resolve_against_it():
    mapping = map_classes(zero_shot=False, vocabulary=VOCAB, classes=["car"], aliases={}, negatives=["BUS"])
    assert mapping.model_classes == ("car", "bus") and mapping.negatives == ("bus",)
    with pytest.raises(ConfigError, match="closest names: bus"):
        map_classes(zero_shot=False, vocabulary=VOCAB, classes=["car"], aliases={}, negatives=["buss"])


def test_synonyms_found_by_two_prompts_merge_into_the_surest_box():
    mapping = zero_shot([], ["dog=dog,puppy"])
    labels = [box("puppy", 0.1, 0.7), box("dog", 0.11, 0.6), box("dog", 0.6, 0.5), box("puppy", 0.62, 0.9)]
    kept = to_dataset_labels(labels, mapping)
    assert [(d.label, d.confidence) for d in kept] == [("dog", 0.7), ("dog", 0.9)]


def test_one_prompts_own_overlapping_boxes_are_left_to_the_model():
    mapping = zero_shot([], ["dog=dog,puppy"])
    kept = to_dataset_labels([box("dog", 0.1, 0.7), box("dog", 0.11, 0.6)], mapping)
    assert len(kept) == 2  # the detector's NMS (or not) decides; merging is across prompts only
    single = zero_shot(["dog"])
    assert len(to_dataset_labels([box("dog", 0.1, 0.7), box("dog", 0.11, 0.6)], single)) == 2


def test_a_negative_suppresses_what_it_overlaps_and_outscores():
    mapping = zero_shot(["dog"], negatives=["toy dog"])
    labels = [
        box("dog", 0.1, 0.6),
        box("toy dog", 0.1, 0.8),  # the same object, surer it is a toy: the dog goes
        box("dog", 0.5, 0.9),
        box("toy dog", 0.51, 0.4),  # less sure than the dog: the dog stays
        box("dog", 0.75, 0.5, w=0.1),
        box("toy dog", 0.1, 0.95),  # far from it: no effect
    ]
    kept = to_dataset_labels(labels, mapping)
    assert [(d.label, d.confidence) for d in kept] == [("dog", 0.9), ("dog", 0.5)]


def test_a_classifier_whose_best_class_is_a_negative_gives_nothing():
    mapping = zero_shot(["dog"], negatives=["toy dog"])
    assert to_dataset_labels([Classification("toy dog", 0.8)], mapping) == []
    dog = Classification("dog", 0.8)
    assert to_dataset_labels([dog], mapping) == [dog]
