"""free_port never hands out a port twice: the switch binds with SO_REUSEPORT, so two switches given the
same port would share it without an error."""

from __future__ import annotations

import pytest

from switch.dev import devstack


def test_a_port_the_kernel_offers_again_is_not_handed_out_again(monkeypatch: pytest.MonkeyPatch) -> None:
    offered = iter([41001, 41001, 41002, 41001, 41003])
    monkeypatch.setattr(devstack, "_kernel_port", lambda: next(offered))
    monkeypatch.setattr(devstack, "_handed_out", set())
    assert [devstack.free_port() for _ in range(3)] == [41001, 41002, 41003]


def test_it_gives_up_when_every_offer_was_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devstack, "_kernel_port", lambda: 41001)
    monkeypatch.setattr(devstack, "_handed_out", {41001})
    with pytest.raises(devstack.StackError):
        devstack.free_port()
