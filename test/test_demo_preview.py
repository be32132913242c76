"""The demo's preview.png carries a colour bar in metres (issue 13 item 14): the picture a
newcomer looks at first says what its colours mean, on the robust range of the scene."""
from __future__ import annotations

import numpy as np

from clip_depth_ros.colorize import colorize_depth, with_colorbar


def test_preview_strip_has_a_colour_bar_in_metres():
    from clip_depth_ros.ros.demo import preview_strip
    rng = np.random.default_rng(0)
    h, w = 96, 128
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    truth = np.linspace(2.0, 4.0, h * w, dtype=np.float32).reshape(h, w)
    pred = truth * 1.1
    strip = preview_strip([(rgb, pred, truth)], 2.0, 4.0)
    assert strip.shape[0] == h and strip.shape[1] > 3 * w  # tiles + the bar
    tiles = strip[:, :3 * w]
    framed = with_colorbar(tiles, 2.0, 4.0)
    np.testing.assert_array_equal(strip, framed)
    # the truth tile (below its label) is coloured on the bar's scale
    np.testing.assert_array_equal(tiles[40:, 2 * w:], colorize_depth(truth, 2.0, 4.0)[40:])
