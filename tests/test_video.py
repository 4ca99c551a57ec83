"""Videos indexed as keyframes: scene changes found, frames searchable with their time, kept in step with the disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from videos import write_still, write_video

from lookalike.index import ImageIndex
from lookalike.video import (
    Frame,
    VideoError,
    file_of,
    frame_at,
    frame_of,
    frame_path,
    frames_per_minute_of,
    keyframes,
    shown_frame,
)

pytest.importorskip("av")


def times_of(index: ImageIndex, video: Path) -> list[float]:
    frames = [frame_of(record.path) for record in index.records()]
    return sorted(frame.time for frame in frames if frame and frame.video == str(video))


def test_keyframes_are_found_at_the_scene_changes(tmp_path: Path):
    for suffix in (".mp4", ".webm"):
        video = write_video(tmp_path / f"clip{suffix}", [0, 1, 2])
        found = list(keyframes(video))
        assert [keyframe.time for keyframe in found] == [0.0, 2.0, 4.0]
        assert (found[1].image.width, found[1].image.height) == (64, 64)


def test_each_minute_keeps_at_most_its_largest_changes(tmp_path: Path):
    video = write_video(tmp_path / "long.mp4", [n % 5 for n in range(14)], seconds=5, fps=2)  # 70 s, a scene each 5
    assert len(list(keyframes(video, per_minute=100))) == 14
    kept = [keyframe.time for keyframe in keyframes(video, per_minute=2)]
    assert len([t for t in kept if t < 60]) == 2 and len([t for t in kept if t >= 60]) == 2
    assert kept[0] == 0.0  # the first frame always starts a scene


def test_frame_at_decodes_the_frame_shown_at_that_time(tmp_path: Path):
    video = write_video(tmp_path / "clip.mp4", [0, 1, 2])
    assert frame_at(video, 4.5, 32).pixels.getpixel((16, 16))[2] > 200  # scene 2: a blue disc in the middle
    with pytest.raises(VideoError, match="no frame at 1:40.0"):
        frame_at(video, 100.0, 32)


def test_a_frame_path_is_the_video_with_its_time_as_a_media_fragment():
    path = frame_path("/films/clip.mp4", 12.5)
    assert path == "/films/clip.mp4#t=12.500"
    assert frame_of(path) == Frame("/films/clip.mp4", 12.5)
    assert file_of(path) == "/films/clip.mp4" and file_of("/photos/a.jpg") == "/photos/a.jpg"
    assert frame_of("/photos/a.jpg") is None and frame_of("/photos/a.jpg#t=1.000") is None
    assert shown_frame(path) == "/films/clip.mp4 @ 0:12.5"
    assert shown_frame(frame_path("/f/long.mkv", 3723.25)) == "/f/long.mkv @ 1:02:03.2"


def test_frames_per_minute_comes_from_the_call_then_the_environment(monkeypatch: pytest.MonkeyPatch):
    assert frames_per_minute_of(None) == 12
    monkeypatch.setenv("LOOKALIKE_FRAMES_PER_MINUTE", "4")
    assert frames_per_minute_of(None) == 4 and frames_per_minute_of(7) == 7
    with pytest.raises(ValueError, match="at least 1"):
        frames_per_minute_of(0)


def test_a_still_of_scene_two_finds_the_frame_of_scene_two_at_its_time(tmp_path: Path):
    video = write_video(tmp_path / "media" / "clip.mp4", [0, 1, 2])
    write_still(tmp_path / "media" / "photo.png", 3)
    with ImageIndex.create(tmp_path / "index") as index:
        report = index.add_folder(tmp_path / "media")
        assert (report.added, report.failed) == (4, 0)  # three frames and the photo
        best = index.search(write_still(tmp_path / "query.png", 1), k=2).matches[0]
        assert frame_of(best.path) == Frame(str(video), 2.0)
        record = index.record(best.id)
        assert (record.width, record.height, record.size) == (64, 64, video.stat().st_size)


def test_resync_keeps_unchanged_videos_redoes_changed_ones_and_drops_deleted_ones(tmp_path: Path):
    media = tmp_path / "media"
    video = write_video(media / "clip.mp4", [0, 1, 2])
    with ImageIndex.create(tmp_path / "index") as index:
        index.add_folder(media)
        first = {record.path: record.id for record in index.records()}
        again = index.add_folder(media)
        assert (again.added, again.unchanged, again.removed) == (0, 3, 0)
        os.utime(video, (1_000_000, 1_000_000))  # touched, the same bytes: nothing embedded
        touched = index.add_folder(media)
        assert (touched.added, touched.updated, touched.unchanged) == (0, 0, 3)
        assert {record.mtime for record in index.records()} == {1_000_000}

        write_video(video, [3, 4], seconds=3)  # a new cut: scenes at 0 and 3 s
        changed = index.add_folder(media)
        assert times_of(index, video) == [0.0, 3.0]
        assert (changed.added, changed.updated, changed.removed) == (1, 1, 2)
        assert first[frame_path(video, 0.0)] == index.record_by_path(frame_path(video, 0.0)).id  # replaced in place
        best = index.search(write_still(tmp_path / "query.png", 4), k=1).matches[0]
        assert frame_of(best.path) == Frame(str(video), 3.0)

        video.unlink()
        gone = index.add_folder(media)
        assert gone.removed == 2 and len(index) == 0


def test_a_corrupt_video_is_reported_and_the_rest_indexed(tmp_path: Path):
    media = tmp_path / "media"
    write_video(media / "good.mkv", [0, 1])
    (media / "broken.mov").write_bytes(b"\x00\x00\x00\x18ftypqt  " + os.urandom(4000))
    whole = write_video(tmp_path / "whole.mp4", [0, 1, 2]).read_bytes()
    (media / "cut.mp4").write_bytes(whole[: len(whole) // 2])  # its index (moov) was at the end
    with ImageIndex.create(tmp_path / "index") as index:
        report = index.add_folder(media)
        assert report.added == 2
        reasons = {Path(failure.path).name: failure.reason for failure in report.failures}
        assert set(reasons) == {"broken.mov", "cut.mp4"}
        assert all(reason.startswith("corrupt") and str(media) not in reason for reason in reasons.values())
        assert "broken.mov" in (tmp_path / "index" / "failures.log").read_text()


def test_a_video_that_became_corrupt_keeps_its_frames_and_is_reported(tmp_path: Path):
    video = write_video(tmp_path / "media" / "clip.mp4", [0, 1, 2])
    with ImageIndex.create(tmp_path / "index") as index:
        index.add_folder(tmp_path / "media")
        video.write_bytes(b"garbage" * 100)
        report = index.add_folder(tmp_path / "media")
        assert report.failed == 1 and times_of(index, video) == [0.0, 2.0, 4.0]


def test_add_and_remove_files_take_a_video_as_its_frames(tmp_path: Path):
    video = write_video(tmp_path / "clip.webm", [0, 1, 2])
    with ImageIndex.create(tmp_path / "index") as index:
        assert index.add_files([video], frames_per_minute=2).added == 2
        assert times_of(index, video) == [0.0, 2.0]
        removed = index.remove_files([video])
        assert (removed.removed, removed.failed, len(index)) == (2, 0, 0)
        assert index.remove_files([video]).failures[0].reason == "not in the index"


def test_progress_counts_files_photos_and_videos(tmp_path: Path):
    write_video(tmp_path / "media" / "a.mp4", [0, 1])
    write_video(tmp_path / "media" / "b.mp4", [2])
    write_still(tmp_path / "media" / "c.png", 3)
    seen: list[tuple[int, int]] = []
    with ImageIndex.create(tmp_path / "index") as index:
        index.add_folder(tmp_path / "media", progress=lambda done, total: seen.append((done, total)))
    assert seen[-2:] == [(2, 3), (3, 3)] and seen[0] == (1, 3)


def test_without_pyav_a_video_is_reported_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError, as on an install without it
    video = tmp_path / "media" / "clip.mp4"
    video.parent.mkdir()
    video.write_bytes(b"not decoded")
    with ImageIndex.create(tmp_path / "index") as index:
        report = index.add_folder(tmp_path / "media")
    assert report.failures[0].reason == "reading videos needs the video extra: pip install 'lookalike[video]'"


def test_the_cli_table_shows_a_frame_as_its_video_and_time(tmp_path: Path):
    write_video(tmp_path / "media" / "clip.mp4", [0, 1, 2])
    index = tmp_path / "index"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    subprocess.run([sys.executable, "-m", "lookalike", "index", str(tmp_path / "media"), "--index", str(index),
                    "--frames-per-minute", "5"], check=True, capture_output=True, env=env)
    query = write_still(tmp_path / "query.png", 1)
    table = subprocess.run([sys.executable, "-m", "lookalike", "search", str(query), "--index", str(index), "--k", "1"],
                           check=True, capture_output=True, text=True, env=env).stdout
    assert f"{tmp_path / 'media' / 'clip.mp4'} @ 0:02.0" in table.splitlines()[-1]
