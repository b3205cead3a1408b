"""`ivr call` walks a full lookup on the payment line with the embedded defaults: with SDU_BASE_URL
unset, the command starts the bundled stub SDU itself."""

from __future__ import annotations

import os

import pytest

from ivr.cli.main import main


@pytest.fixture
def embedded(monkeypatch, redis_client):
    monkeypatch.setenv("SDU_BASE_URL", "")
    monkeypatch.delenv("SDU_BASE_URL")            # unset; restored (unset) after the test
    monkeypatch.setenv("IVR_ENV", "development")
    monkeypatch.setenv("REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9"))


@pytest.mark.parametrize("to, first", [("+18882337223", "1"), ("payments", "-")])
def test_ivr_call_walks_a_payer_lookup(embedded, capsys, to, first):
    # Any key but 2 (or silence, "-") keeps English; "--keys=" because a value may start with "-".
    keys = first + ",123456789#,1,1234#,1,9,3"
    assert main(["call", "--to", to, f"--keys={keys}"]) == 0
    out = capsys.readouterr().out
    assert "You entered 1 2 3, 4 5 6, 7 8 9." in out
    assert "1 2 3 4" not in out
    assert "Your last payment, two hundred six dollars, from an employer's paycheck withholding" in out
    assert "November 13" in out
    assert "The past-due balance, also called arrears, is three thousand four hundred twelve dollars" in out
    assert "cannot reach payment information" not in out


def test_ivr_call_in_spanish_as_the_payee(embedded, capsys):
    assert main(["call", "--to", "payments", "--keys", "2,089123456#,1,0707#,1"]) == 0
    out = capsys.readouterr().out
    assert "Está en espera, así que no se le ha enviado." in out
    assert "trescientos noventa dólares" in out


def test_ivr_call_signs_in_without_a_redis_server(embedded, monkeypatch, capsys):
    # The README's first try needs no Redis: the embedded store must run the PIN guard's script too.
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(["call", "--to", "payments", "--keys=-,123456789#,1,1234#,1,9,3"]) == 0
    out = capsys.readouterr().out
    assert "Your last payment, two hundred six dollars" in out
    assert "three thousand four hundred twelve dollars" in out
    assert "something went wrong" not in out.lower()
