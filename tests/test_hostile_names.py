"""Names: no URL, host or run id can make a WARC, dataset, quarantine, report or
spool file name escape its folder. Hypothesis feeds hostile strings (``..``,
slashes, backslashes, NUL, absolute paths, percent-encoding, Unicode) through every
function that builds a name; each either refuses (StoreError / SpoolError /
ValueError) or gives a path that stays inside its folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crawler.dataset.spool import Spool, SpoolError, check_run_id
from crawler.layout import dataset_key, manifest_key, quarantine_key, report_key, warc_key
from crawler.store import LocalStore, StoreError, safe_key
from crawler.warc.writer import WarcFileWriter

HOSTILE = st.one_of(
    st.sampled_from(["..", ".", "../..", "/etc/passwd", "..\\..\\x", "a/../../b", "%2e%2e%2f", "\x00", "",
                     "baotuyenquang.com.vn/../../etc", "xn--bo-tuyn-quang-9ib.vn", "m..", "~root", "a//b"]),
    st.text(alphabet=st.sampled_from("./\\\x00%2eè:~ab-_"), max_size=20),
    st.text(max_size=40),
)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def inside(path: Path, folder: Path) -> bool:
    real = Path(os.path.normpath(path))
    return real == folder or folder in real.parents


@SETTINGS
@given(hostile=HOSTILE, batch=st.integers(0, 99999))
def test_store_keys_never_leave_the_store(tmp_path, hostile, batch):
    root = Path(os.path.normpath(tmp_path / "store"))
    store = LocalStore(root)
    builders = [
        lambda: dataset_key(hostile, "run", batch),
        lambda: dataset_key("2025-01-01", hostile, batch, "parquet"),
        lambda: manifest_key(hostile),
        lambda: quarantine_key(hostile, batch),
        lambda: report_key(hostile),
        lambda: warc_key(f"NEWSARCHIVE-20250101000000-00000-{hostile}-1.warc.gz"),
        lambda: safe_key(hostile),
    ]
    for build in builders:
        try:
            key = build()
        except (StoreError, ValueError):
            continue
        assert inside(store._path(key), root), key
        assert ".." not in key.split("/") and not key.startswith("/") and "\x00" not in key


@SETTINGS
@given(run_id=HOSTILE)
def test_spool_run_folders_stay_in_the_spool(tmp_path, run_id):
    root = tmp_path / "spool"
    spool = Spool(root)
    try:
        check_run_id(run_id)
    except SpoolError:
        with pytest.raises(SpoolError):
            spool._run_dir(run_id)
        return
    assert "/" not in run_id and run_id not in (".", "..")
    assert spool._run_dir(run_id).parent == spool.root


@SETTINGS
@given(host=HOSTILE)
def test_warc_file_names_stay_in_the_warc_folder(tmp_path, host):
    folder = tmp_path / "warc"
    writer = WarcFileWriter(folder, host=host or None)
    name = writer._next_name()
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert (folder / name).parent == folder and inside(folder / name, folder)
    assert warc_key(name).startswith("warc/")
