"""The shipped systemd units restart their process forever, run it as its own user and hold no secret."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

UNITS = sorted((Path(__file__).resolve().parents[2] / "deploy" / "systemd").glob("*.service"))
SECRET = re.compile(r"(PASSWORD|PIN|CREDENTIAL|HMAC_KEY|SECRET|postgresql://[^ ]*:[^ ]*@)", re.IGNORECASE)


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str          # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


def test_every_process_has_a_unit() -> None:
    assert {path.name for path in UNITS} == {"payment-switch.service", "payment-vault.service",
                                             "acquirer-sim.service"}


def test_units_restart_forever_as_their_own_user() -> None:
    users = set()
    for path in UNITS:
        service = _unit(path)["Service"]
        assert service["Restart"] == "always" and service["StartLimitIntervalSec"] == "0", path.name
        assert service["User"] not in ("", "root"), path.name
        assert service.get("NoNewPrivileges") == "yes", path.name
        users.add(service["User"])
    assert len(users) == len(UNITS)                    # one security zone each


def test_no_secret_in_a_unit_file() -> None:
    for path in UNITS:
        for line in path.read_text().splitlines():
            if line.startswith("#") or line.startswith("EnvironmentFile="):
                continue
            assert not SECRET.search(line), f"{path.name}: {line}"
