"""Work folders: a killed writer's folder is cleaned up, a live writer's never."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from brainlrp._io import publish_files, remove_stale_work_folders, work_folder

HOLDER = """
import sys, time
from brainlrp._io import work_folder
with work_folder(sys.argv[1], "out") as work:
    (work / "half.nii.gz").write_text("half")
    print(work, flush=True)
    time.sleep(60)
"""


def test_a_killed_writers_folder_is_removed_and_a_live_ones_kept(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        live = tmp_path / os.path.basename(proc.stdout.readline().strip())
        assert (live / "half.nii.gz").is_file()
        assert remove_stale_work_folders(tmp_path, "out") == 0 and live.is_dir()
    finally:
        proc.kill()
        proc.wait()
    assert live.is_dir()  # SIGKILL: nothing ran to clean up
    assert remove_stale_work_folders(tmp_path, "out") == 1 and not live.exists()


def test_an_unlocked_old_folder_is_stale_only_after_an_hour(tmp_path):
    young, old = tmp_path / ".tmp-out-young", tmp_path / ".tmp-out-old"
    young.mkdir()
    old.mkdir()
    hour_ago = time.time() - 3700
    os.utime(old, (hour_ago, hour_ago))
    assert remove_stale_work_folders(tmp_path) == 1
    assert young.is_dir() and not old.exists()


def test_published_files_replace_and_keep_the_rest(tmp_path):
    target = tmp_path / "out"
    (target / "native").mkdir(parents=True)
    (target / "keep.txt").write_text("mine")
    (target / "a.txt").write_text("old")
    with work_folder(tmp_path, "out") as work:
        (work / "native").mkdir()
        (work / "native" / "b.txt").write_text("b")
        (work / "a.txt").write_text("new")
        (work / "z.json").write_text("{}")
        moved = publish_files(work, target, last="a.txt")
    assert [p.relative_to(target).as_posix() for p in moved] == ["native/b.txt", "z.json",
                                                                  "a.txt"]
    assert (target / "a.txt").read_text() == "new" and (target / "keep.txt").is_file()
    assert not list(tmp_path.glob(".tmp-*"))
