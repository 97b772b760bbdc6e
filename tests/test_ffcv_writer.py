"""The FFCV writer overrides check the private names they rely on before the first write."""
import importlib.metadata
import warnings

import pytest

from fastload import ffcv_writer
from fastload.errors import FastloadError


@pytest.fixture(autouse=True)
def fresh_check():
    ffcv_writer.check_ffcv.cache_clear()
    yield
    ffcv_writer.check_ffcv.cache_clear()


def test_the_installed_ffcv_has_every_private_name():
    assert importlib.metadata.version("ffcv") == ffcv_writer.FFCV_VERSION
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ffcv_writer.check_ffcv()


def test_a_missing_private_name_is_one_error_naming_it(monkeypatch):
    monkeypatch.setitem(ffcv_writer.PRIVATE_NAMES, "ffcv.writer.DatasetWriter._write_batches", None)
    with pytest.raises(FastloadError, match=r"ffcv\.writer\.DatasetWriter\._write_batches \(missing\).*"
                                            r"install ffcv==1\.0\.2") as caught:
        ffcv_writer.check_ffcv()
    assert "\n" not in str(caught.value)


def test_a_changed_signature_is_an_error(monkeypatch):
    monkeypatch.setitem(ffcv_writer.PRIVATE_NAMES, "ffcv.writer.handle_sample", ("sample", "dest_ix"))
    with pytest.raises(FastloadError, match=r"ffcv\.writer\.handle_sample \(takes"):
        ffcv_writer.check_ffcv()


def test_another_version_with_every_name_is_a_warning(monkeypatch):
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "1.0.3")
    with pytest.warns(UserWarning, match="ffcv 1.0.3 is installed; .* written against ffcv 1.0.2"):
        ffcv_writer.check_ffcv()
