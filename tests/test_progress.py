"""Progress bars refresh sparsely where every refresh is stored (papermill outputs, CI logs)."""
import io

from claspkit.progress import RECORDED_INTERVAL_S, progress_bar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_recorded_output_refreshes_sparsely_and_ends_with_the_count():
    out = io.StringIO()
    with progress_bar(total=5000, stream=out, desc="work") as bar:
        assert bar.mininterval == RECORDED_INTERVAL_S
        for _ in range(5000):
            bar.update(1)
    text = out.getvalue()
    assert text.count("\r") <= 3 and "5000/5000" in text


def test_terminal_keeps_a_live_bar_and_explicit_settings_win():
    assert progress_bar(total=1, stream=Terminal()).mininterval == 0.1
    assert progress_bar(total=1, stream=io.StringIO(), mininterval=1.0).mininterval == 1.0
    assert list(progress_bar(range(3), stream=io.StringIO())) == [0, 1, 2]
