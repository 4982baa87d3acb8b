"""The config loader on arbitrary input: a ConfigError with one line, never another exception."""
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtcnn_train.config import load_config
from mtcnn_train.errors import ConfigError

KEYS = ["sampling.neg_iou", "sampling.ratio.negative", "train.pnet.lr", "train.onet.epochs", "detection.thresholds",
        "detection.min_face_size", "evaluation.fp_points", "data.wider_root", "train.rnet.amp", "sampling.total",
        "train.pnet.lr_milestones", "data.val_fraction", "sampling"]
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**30, 10**30).map(str),
    st.sampled_from([".nan", ".inf", "-.inf", "1e400", "-1", "null", "true", "[]", "{}", "[1, 2, 3]", "'x'", "{a: 1}",
                     "[.nan, 0.5, 0.7]", "1e-320", "0x10", "~", "!!binary aGk=", "&a [*a]"]),
    st.text(string.printable, max_size=20),
)


def _load_expecting_clean_outcome(path=None, overrides=()):
    try:
        load_config(path, list(overrides))
    except ConfigError as exc:
        assert "\n" not in str(exc), str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(KEYS), VALUES)
def test_overrides_never_crash(key, value):
    _load_expecting_clean_outcome(overrides=[f"{key}={value}"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(tmp_path, data):
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    _load_expecting_clean_outcome(path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(KEYS), VALUES, st.integers(0, 200))
def test_yaml_documents_and_truncations_never_crash(tmp_path, key, value, cut):
    section, *rest = key.split(".")
    text = f"{section}:\n" + "".join(f"{'  ' * (i + 1)}{part}:\n" for i, part in enumerate(rest[:-1]))
    text += f"{'  ' * len(rest)}{rest[-1]}: {value}\n" if rest else f"  {value}\n"
    path = tmp_path / "fuzz.yaml"
    path.write_text(text[:cut] if cut < len(text) else text)
    _load_expecting_clean_outcome(path)
