"""The status line of long commands: shown and erased on a terminal, absent elsewhere."""

import io

import pytest

from netdsl.cli.status import StatusLine

ERASE = "\r\x1b[K"


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def a_real_terminal(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "40")


def test_each_status_overwrites_the_last_and_the_end_erases_it():
    tty = Terminal()
    with StatusLine(tty) as status:
        status.show("checking x.net...")
        status.show("building `x`...")
    assert tty.getvalue() == ERASE + "checking x.net..." + ERASE + "building `x`..." + ERASE


def test_an_error_inside_erases_the_status_before_it_propagates():
    tty = Terminal()
    with pytest.raises(KeyError):
        with StatusLine(tty) as status:
            status.show("building...")
            raise KeyError("x")
    assert tty.getvalue().endswith(ERASE)


def test_a_status_wider_than_the_terminal_is_cut_so_it_cannot_wrap():
    tty = Terminal()
    StatusLine(tty).show("x" * 100)
    shown = tty.getvalue().removeprefix(ERASE)
    assert len(shown) == 39 and shown.endswith("...")


def test_nothing_is_written_to_a_pipe_or_a_file():
    out = io.StringIO()
    with StatusLine(out) as status:
        status.show("building...")
    assert out.getvalue() == "" and not status.active


def test_nothing_is_written_to_a_terminal_that_cannot_move_the_cursor(monkeypatch):
    monkeypatch.setenv("TERM", "dumb")
    tty = Terminal()
    with StatusLine(tty) as status:
        status.show("building...")
    assert tty.getvalue() == ""


def test_no_erase_when_nothing_was_shown():
    tty = Terminal()
    with StatusLine(tty):
        pass
    assert tty.getvalue() == ""


def test_a_terminal_that_went_away_does_not_fail_the_command():
    class Gone(Terminal):
        def write(self, text):
            raise OSError("EIO")

    with StatusLine(Gone()) as status:
        status.show("building...")
    assert not status.active
