"""The demo's puzzle code grids come with a colour legend: a strip keying each tab10 colour to its code 0..9."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sage_ros.demo.sheet import code_grid  # noqa: E402


def test_the_first_code_grid_carries_a_legend_of_all_ten_codes():
    fig, (top, below) = plt.subplots(2, 1)
    codes = np.arange(900).reshape(30, 30) % 10
    code_grid(top, codes, legend=True)
    code_grid(below, codes)
    top.set_title("puzzle codes 30x30")
    fig.canvas.draw()
    (strip,) = [child for child in top.child_axes if child.get_label() == "code legend"]
    assert [t.get_text() for t in strip.texts] == [str(code) for code in range(10)]
    strip_colours = strip.images[0].cmap(strip.images[0].norm(strip.images[0].get_array()))[0]
    grid_colours = top.images[0].cmap(top.images[0].norm(np.arange(10)))
    assert np.allclose(strip_colours, grid_colours)  # the key shows the grid's own colours, in code order
    assert not below.child_axes  # one legend, not one per row
    assert top.title.get_window_extent().y0 >= strip.get_window_extent().y1 - 1  # the title sits above the strip
    plt.close(fig)
