"""Property-based fuzz of every config field: extreme, wrong-type and non-finite values either make a valid
config or raise ``ConfigError`` naming the field, never another exception; and a valid config's derived
arithmetic (learning rate in float32, the image count) stays finite. The same for the data readers' headers:
random bytes are a ``DataError`` or a data set, never a traceback."""

from __future__ import annotations

import dataclasses
import math

from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from mheads.config import Config, ConfigError, config_from_settings
from mheads.config.schema import FLOAT32_MAX, MAX_COUNT
from properties import property_settings

FIELDS = [
    f"{section.name}.{f.name}"
    for section in dataclasses.fields(Config)
    if section.name != "name"
    for f in dataclasses.fields(getattr(Config(), section.name))
]

hostile = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.one_of(st.integers(-5, 5), st.text(max_size=3)), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(-3, 3), max_size=3),
    st.sampled_from([0, 1, -1, 2**53, 2**53 + 1, 1e308, -1e308, 1e-320, 0.5, "mcl", "conv1", "auto", [0, 1]]),
)


def test_every_field_is_fuzzed():
    assert len(FIELDS) > 60 and "data.loader" in FIELDS and "loss.epsilon" in FIELDS


@property_settings(600, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=hostile)
def test_any_value_of_any_field_is_valid_or_a_config_error_naming_it(field, value):
    try:
        cfg = config_from_settings({field: value})
    except ConfigError as err:
        head = str(err).split(":")[0]
        assert head.startswith(field.split(".")[0]) or head in ("settings", "data.label_split"), str(err)
        return
    t, o = cfg.train, cfg.optim
    assert t.iterations * t.accumulate * t.batch_size <= MAX_COUNT
    lr = o.lr * (cfg.model.members if o.lr_times_members else 1)
    assert math.isfinite(lr) and lr <= FLOAT32_MAX


@property_settings(300)
@given(st.binary(max_size=200), st.booleans())
def test_random_idx_bytes_are_parsed_or_refused(data, gz):
    from mheads.data import DataError
    from mheads.data.idx import parse_idx

    try:
        parse_idx(data, "x.idx", gz)
    except DataError:
        pass


@property_settings(300)
@given(st.binary(max_size=300))
def test_random_image_bytes_are_decoded_or_refused(data):
    from mheads.data import DataError
    from mheads.data.imagefolder import decode_image
    from mheads.data.transforms import decode

    for fn in (decode_image, decode):
        try:
            fn(data, "x.png")
        except DataError:
            pass


@property_settings(200)
@given(st.binary(max_size=64), st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM"]))
def test_image_headers_followed_by_garbage_are_refused(tail, magic):
    from mheads.data import DataError
    from mheads.data.imagefolder import decode_image

    try:
        decode_image(magic + tail, "x")
    except DataError:
        pass


def test_label_split_entries_must_be_lists_of_class_indices():
    import pytest

    for bad, where in (
        ([0, 1], r"data.label_split\[0\]: got 0"),
        ([[0], [1, "a"]], r"data.label_split\[1\]"),
        ([[0], []], r"data.label_split\[1\]: got \[\]"),
    ):
        with pytest.raises(ConfigError, match=where):
            config_from_settings({"model.members": 2, "data.label_split": bad})
    config_from_settings({"model.members": 2, "data.label_split": [[0], [1, 2]]})
