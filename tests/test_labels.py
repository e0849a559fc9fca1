import pytest

from fer_keras.errors import ConfigError, DataError
from fer_keras.labels import CANONICAL, FER2013_ORDER, map_name, mapping_between, preset_classes


def test_presets_sizes_and_order():
    assert [len(preset_classes(p)) for p in ("8", "7", "5", "4", "2")] == [8, 7, 5, 4, 2]
    assert preset_classes("8") == CANONICAL


@pytest.mark.parametrize("name,preset,expected", [
    ("disgust", "5", "anger"), ("fear", "5", "sad"), ("contempt", "5", "anger"),
    ("happy", "4", "positive"), ("sad", "4", "negative"), ("surprise", "4", "surprise"),
    ("neutral", "2", "positive"), ("surprise", "2", "positive"), ("contempt", "2", "negative"),
    ("Angry", "7", "anger"), ("happiness", "8", "happy"), ("pos", "2", "positive"),
])
def test_merges_by_name(name, preset, expected):
    assert preset_classes(preset)[map_name(name, preset)] == expected


def test_contempt_dropped_in_7_class_preset():
    assert map_name("contempt", "7") is None


def test_fer2013_order_maps_by_name_not_index():
    idx = mapping_between(FER2013_ORDER, "8")
    assert [CANONICAL[i] for i in idx] == FER2013_ORDER


def test_unknown_label_and_preset_errors():
    with pytest.raises(DataError, match="unknown expression label 'grumpy'"):
        map_name("grumpy", "7")
    with pytest.raises(ConfigError, match="valid: 8, 7, 5, 4, 2"):
        preset_classes("6")
    with pytest.raises(DataError, match="cannot be mapped"):
        map_name("positive", "7")
