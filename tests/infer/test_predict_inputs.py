"""`mheads predict` on hostile inputs: a FIFO or a device named like an image, and a non-UTF-8 file name, are
each reported for that image alone (never opened blocking, never skipped silently, never a crash on
printing), the other images predicted, exit 2 at the end."""

from __future__ import annotations

import json
import os

from PIL import Image


def test_predict_reports_a_fifo_a_device_and_a_non_utf8_name_per_image(server, finished, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("L", (28, 28), 100).save(photos / "a.png")
    os.mkfifo(photos / "b.png")
    os.symlink("/dev/zero", photos / "c.png")
    Image.new("L", (28, 28), 200).save(os.fsencode(photos) + b"/d\xff.png")
    r = server.run("predict", "--run", finished, photos, "--format", "json", timeout=60)
    assert r.returncode == 2, str(r)
    records = json.loads(r.stdout)
    by_name = {rec["path"].rsplit("/", 1)[-1]: rec for rec in records}
    assert sorted(by_name) == ["a.png", "b.png", "c.png", "d\\xff.png"], by_name.keys()
    assert "error" not in by_name["a.png"] and by_name["a.png"]["top"], by_name["a.png"]
    for name in ("b.png", "c.png"):
        assert "error" in by_name[name], by_name[name]
    assert "Traceback" not in r.stderr
