"""The dir sink never grows a lake on the wrong disk (issue 12 item 10).

A removed lake directory, or a disk that was unmounted under it, used to be
recreated silently on the local disk; flush reported success and the spool
copies were deleted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge_agent.errors import TransientError
from edge_agent.shippers.dir import MARKER, DirShipper
from tests.shippers.test_contract import spooled


def test_a_missing_lake_root_is_an_error_unless_create_is_set(tmp_path: Path) -> None:
    local, manifest, rec = spooled(tmp_path, b"PAR1data")
    with pytest.raises(TransientError, match=r"does not exist.*sink.create = true"):
        DirShipper(tmp_path / "lake").put(local, manifest, rec)
    assert not (tmp_path / "lake").exists()

    DirShipper(tmp_path / "lake", create=True).put(local, manifest, rec)
    assert (tmp_path / "lake" / rec.relpath).read_bytes() == b"PAR1data"
    assert (tmp_path / "lake" / MARKER).exists()


@pytest.mark.parametrize("create", [False, True])
def test_a_lake_root_removed_while_running_is_not_recreated(tmp_path: Path,
                                                             create: bool) -> None:
    lake = tmp_path / "lake"
    lake.mkdir()
    shipper = DirShipper(lake, create=create)
    local, manifest, rec = spooled(tmp_path, b"PAR1one", "one")
    shipper.put(local, manifest, rec)
    shutil.rmtree(lake)

    local, manifest, rec = spooled(tmp_path, b"PAR1two", "two")
    with pytest.raises(TransientError, match="does not exist"):
        shipper.put(local, manifest, rec)
    assert not lake.exists()


def test_an_emptied_mount_point_is_not_taken_for_the_lake(tmp_path: Path) -> None:
    """An unmounted disk leaves its empty mount point behind: the marker is gone."""
    lake = tmp_path / "lake"
    lake.mkdir()
    shipper = DirShipper(lake)
    local, manifest, rec = spooled(tmp_path, b"PAR1one", "one")
    shipper.put(local, manifest, rec)
    shutil.rmtree(lake)
    lake.mkdir()  # what is left when the filesystem is unmounted

    with pytest.raises(TransientError, match="unmounted"):
        shipper.put(local, manifest, rec)
    assert list(lake.iterdir()) == []
