import os
import re

import pytest

from fer_keras.config import Config, config_from_dict, load_config, read_yaml, save_config
from fer_keras.errors import ConfigError


def test_defaults_yaml_overrides_and_flags(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("model:\n  name: ResNet50\ntrain:\n  epochs: 7\n")
    cfg = load_config(str(y), ["train.learning_rate=3e-4", "model.widths=[8,16]"], {"train.epochs": 9,
                                                                                 "data.path": None})
    assert cfg.model.name == "ResNet50"
    assert cfg.train.epochs == 9  # explicit flag beats YAML
    assert cfg.train.learning_rate == pytest.approx(3e-4)
    assert cfg.model.widths == [8, 16]
    assert cfg.data.path is None


@pytest.mark.parametrize("override,msg", [
    (["train.epochz=3"], "unknown config key 'train.epochz'"),
    (["nosection.x=1"], "unknown config key 'nosection.x'"),
    (["train.epochs=abc"], "train.epochs: cannot use 'abc' as int"),
    (["train.optimizer=rmsprop"], "not one of"),
    (["data.labels=6"], "unknown label preset"),
    (["train"], "--set expects key=value"),
])
def test_bad_overrides(override, msg):
    with pytest.raises(ConfigError, match=msg):
        load_config(None, override)


def test_unknown_key_in_yaml_names_file(tmp_path):
    y = tmp_path / "bad.yaml"
    y.write_text("train:\n  learning_rat: 0.1\n")
    with pytest.raises(ConfigError, match="bad.yaml.*learning_rat"):
        load_config(str(y))


def test_round_trip(tmp_path):
    cfg = load_config(None, ["model.name=VGG16", "data.labels=5", "augment.blur_prob=0.5"])
    save_config(cfg, str(tmp_path / "config.yaml"))
    again = config_from_dict(read_yaml(str(tmp_path / "config.yaml")))
    assert again == cfg
    assert isinstance(again, Config)


def test_shipped_configs_load():
    import glob
    import os

    files = glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "*.yaml"))
    assert files
    for f in files:
        load_config(f)


def test_every_config_file_names_itself_states_an_expected_result_and_loads():
    """A config's header is its documentation: the command that uses it, and what a user should expect."""
    import glob

    from fer_keras.config import load_config

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
    files = sorted(glob.glob(os.path.join(root, "*.yaml")))
    assert len(files) >= 10
    for path in files:
        with open(path, encoding="utf-8") as f:
            header = "".join(line for line in f if line.startswith("#"))
        name = f"configs/{os.path.basename(path)}"
        assert name in header, f"{name}: its header does not name the file (a command using it)"
        assert "expected" in header.lower(), f"{name}: its header states no expected result"
        said = header[header.lower().index("expected"):][:300]
        assert re.search(r"\d", said), f"{name}: its expected result has no number ({said[:80]!r})"
        load_config(path)  # and it is a valid config


def test_yaml_errors_name_line_and_column_and_values_are_capped(tmp_path):
    from fer_keras.config import load_config

    bad = tmp_path / "tab.yaml"
    bad.write_text("train:\n\tepochs: 3\n")
    with pytest.raises(ConfigError, match=r"tab.yaml: not valid YAML \(line 2, column 1: .*tab"):
        load_config(str(bad))
    big = tmp_path / "big.yaml"
    big.write_text("train:\n  name: " + "x" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match=r"big.yaml: [\d,]+ bytes is not a config file"):
        load_config(str(big))
    with pytest.raises(ConfigError) as e:
        load_config(None, ["data.format=" + "y" * 100_000])
    assert len(str(e.value)) < 300 and "100,002 characters" in str(e.value)
    ver = tmp_path / "v.yaml"
    ver.write_text('version: "1"\n')
    with pytest.raises(ConfigError, match=r"config version is the text '1'; this fer_keras reads version: 1"):
        load_config(str(ver))


def test_data_format_choices_are_the_reader_registry(monkeypatch):
    """A reader registered once is a valid data.format (and data.sources format) with no other edit; the check
    starts no TensorFlow."""
    import subprocess
    import sys

    from fer_keras.config import set_key
    from fer_keras.data.readers import READERS

    monkeypatch.setattr(READERS, "_items", dict(READERS._items))
    monkeypatch.setattr(READERS, "_names", dict(READERS._names))
    cfg = Config()
    with pytest.raises(ConfigError, match="'myformat' is not one of"):
        set_key(cfg, "data.format", "myformat")
    READERS.register("myformat")(lambda path, cfg, log: None)
    set_key(cfg, "data.format", "myformat")
    assert cfg.data.format == "myformat"
    code = ("import sys; from fer_keras.config import Config, set_key; set_key(Config(), 'data.format', 'ferplus'); "
            "print('tensorflow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
