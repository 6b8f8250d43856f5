import pytest

from clipfactory.ids import InvalidId, clip_key, safe_key, validate_id


@pytest.mark.parametrize("bad", ["../x", "a/b", "a\\b", "..", "", "   ", "x\x00y", "a\nb",
                                 "x" * 300, None])
def test_validate_id_rejects_hostile_ids(bad):
    with pytest.raises(InvalidId):
        validate_id(bad)


@pytest.mark.parametrize("good", ["abc", "vid 01", "café", "Yt_-AbC123", 42])
def test_validate_id_keeps_ids_verbatim(good):
    assert validate_id(good) == str(good)


def test_safe_key_is_safe_and_collision_free():
    keys = {safe_key(t) for t in ["a b", "a_b", "a.b", "a/b", "café", "cafe", "日本語", "x" * 90]}
    assert len(keys) == 8
    for k in keys:
        assert k and "." not in k and "/" not in k and " " not in k
        assert all(ch.isalnum() or ch in "_-" for ch in k)
        assert k.isascii()
    assert safe_key("plain_id-1") == "plain_id-1"


def test_clip_key_carries_the_span():
    assert clip_key("vid", 3, 120) == "vid_0000003_0000120"
