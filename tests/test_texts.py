"""Issue 18: the office's details, or a callback's reference, by text: consent in the call, sending by the
worker through Twilio's Messages API (checked against the twilio package's own request with `responses`),
landlines (30006) never retried, STOP and START from the signed inbound-SMS webhook."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs

import pytest
import responses
from twilio.rest import Client

from ivr.callflow.simphone import Phone, Transport
from ivr.jobs.worker import STREAM, JobContext, Worker
from ivr.settings import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN
from tests.conftest import LINES
from tests.test_callbacks import LANG, spoken_ref

SENDER = "+18605550100"
PUBLIC = "https://ivr.example.org"
CALLER = "+18605550199"
MESSAGES = f"https://api.twilio.com/2010-04-01/Accounts/{DEV_ACCOUNT_SID}/Messages.json"
HARTFORD = ["-", "5", "2", "1"]
# 1-888-233-7223 in English or Spanish, then 9 at the case number: handed over to the call center's menu.
PAY_TO_CC = {"en": ["1", "9"], "es": ["2", "9"]}
SATURDAY_NIGHT = "2026-11-28 23:30"


@pytest.fixture
def sms_app(make_app):
    return make_app(SMS_FROM=SENDER)


@pytest.fixture
def place(sms_app):
    def run(keys, caller=CALLER, app=None, line="callcenter") -> Phone:
        return Phone(transport=Transport(DEV_AUTH_TOKEN, app=app or sms_app), to=LINES[line],
                     caller=caller).place(keys)
    return run


@pytest.fixture
def worker(sms_app, redis_client):
    """Run what the worker has queued, as `ivr worker` does (its config with the public origin)."""
    config = {**sms_app.config, "PUBLIC_BASE_URL": PUBLIC}

    def run() -> int:
        return Worker(JobContext(config, redis_client), name="test-worker").run_once(block_ms=None)
    return run


def twilio_reply(sid: str = "SM" + "a" * 32) -> dict:
    return {"sid": sid, "status": "queued", "account_sid": DEV_ACCOUNT_SID, "to": CALLER, "from": SENDER,
            "body": "", "num_segments": "1", "direction": "outbound-api", "api_version": "2010-04-01",
            "date_created": None, "date_updated": None, "date_sent": None, "error_code": None,
            "error_message": None, "uri": "/x.json", "price": None, "price_unit": "USD", "num_media": "0",
            "messaging_service_sid": None, "subresource_uris": {}}


def twilios_own_request(to: str, body: str, status_callback: str):
    """The request the twilio package itself makes for messages.create, captured with `responses`."""
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, MESSAGES, json=twilio_reply(), status=201)
        Client(DEV_ACCOUNT_SID, DEV_AUTH_TOKEN).messages.create(to=to, from_=SENDER, body=body,
                                                                status_callback=status_callback)
        return mock.calls[0].request


def form(request) -> dict[str, list[str]]:
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    return parse_qs(body, keep_blank_values=True)


def test_after_a_busy_office_the_caller_gets_its_details_by_text_exactly_as_twilio_documents(place, worker,
                                                                                              redis_client):
    c = place(HARTFORD + ["dial:busy", "4"])
    assert "To get this office's address and phone number in a text message, press 4." in c.said
    assert c.said.endswith("We will send the text message in a minute. Thank you for calling. Goodbye.")
    (tid,) = [k.decode().split(":")[2] for k in redis_client.keys("ivr:sms:*") if len(k.split(b":")) == 3]
    text = redis_client.hgetall(f"ivr:sms:{tid}")
    assert text[b"status"] == b"queued" and text[b"consent_at"].startswith(b"2026-11-24T15:")   # consent, with its time
    assert CALLER.encode() not in b"".join(text.values())                                      # sealed
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, MESSAGES, json=twilio_reply(), status=201)
        assert worker() == 1
        (sent,) = mock.calls
    fields = form(sent.request)
    assert sent.request.method == "POST" and sent.request.url == MESSAGES
    assert set(fields) == {"To", "From", "Body", "StatusCallback"}
    assert fields["To"] == [CALLER] and fields["From"] == [SENDER]
    assert fields["StatusCallback"] == [f"{PUBLIC}/sms/status"]
    body = fields["Body"][0]
    assert "The Hartford main office, phone (860) 566-8723, 999 Asylum Street, Hartford, CT." in body
    assert "Monday through Friday" in body and "STOP" in body
    # The same as the twilio package's own request for the same message: URL, fields, authentication.
    own = twilios_own_request(CALLER, body, f"{PUBLIC}/sms/status")
    assert (own.method, own.url, form(own)) == (sent.request.method, sent.request.url, fields)
    assert own.headers["Authorization"] == sent.request.headers["Authorization"]
    assert redis_client.hget(f"ivr:sms:{tid}", "status") == b"sent"
    assert worker() == 0                                   # never sent twice


def test_after_a_call_the_office_answered_the_text_is_offered_before_the_goodbye(place, redis_client):
    c = place(HARTFORD + ["dial:completed", "-"])
    assert "To get this office's address and phone number in a text message, press 4." in c.said
    assert "To have someone call you back" not in c.said          # they reached the office
    assert c.said.endswith("Thank you for calling. Goodbye.") and c.hung_up
    assert redis_client.xlen(STREAM) == 0                          # silence: nothing sent
    place(HARTFORD + ["dial:completed", "4"])
    assert redis_client.xlen(STREAM) == 1


@pytest.mark.parametrize("lang", ["en", "es"])
def test_the_callback_reference_by_text_in_the_callers_language(place, worker, clock, redis_client, make_app, lang):
    clock.set(SATURDAY_NIGHT)
    c = place([LANG[lang], "0", "3", "1", "1", "2", "1"])
    ref = spoken_ref(c.said, lang)
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, MESSAGES, json=twilio_reply(), status=201)
        worker()
        body = form(mock.calls[0].request)["Body"][0]
    expected = {"en": f"your call back reference is {ref}. We will call you on Monday, November 30, in the morning.",
                "es": f"su número de referencia para la llamada es {ref}. Le vamos a llamar el lunes 30 de "
                      "noviembre, en la mañana."}
    assert expected[lang] in body
    callback = redis_client.hgetall(f"ivr:cb:{ref}")
    assert callback[b"text_status"] == b"sent" and callback[b"text_consent_at"]


def test_no_case_number_pin_inmate_number_or_payment_figure_is_ever_texted(sms_app):
    """A text is made from its template's fields only; the loader refuses a template with any other."""
    from ivr.domain.texts import TEMPLATE_FIELDS, TextError, load_templates
    from ivr.jobs.callbacks import _resources

    templates, _, _ = _resources(sms_app.config["CONFIG_DIR"], sms_app.config["PROMPTS_DIR"])
    for lang, words in templates.items():
        for tid, text in words.items():
            assert set(re.findall(r"\{(\w+)\}", text)) == TEMPLATE_FIELDS[tid], (lang, tid)
    assert not {"case", "pin", "inmate", "amount", "balance"} & set().union(*TEMPLATE_FIELDS.values())
    import shutil
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(sms_app.config["PROMPTS_DIR"], Path(tmp) / "prompts")
        path = Path(tmp) / "prompts" / "en" / "sms" / "texts.yaml"
        path.write_text(path.read_text().replace("{ref}", "{ref} {case}"))
        with pytest.raises(TextError, match="callback must use the fields"):
            load_templates(Path(tmp) / "prompts", {"en": None})


def test_a_landline_30006_is_recorded_on_the_callback_and_never_texted_again(place, worker, clock, sms_app,
                                                                               redis_client):
    clock.set(SATURDAY_NIGHT)
    place(["-", "0", "3", "1", "1", "2", "1"])
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, MESSAGES, json=twilio_reply("SM" + "b" * 32), status=201)
        worker()
    transport = Transport(DEV_AUTH_TOKEN, app=sms_app)
    status, _ = transport.post("/sms/status", {"MessageSid": "SM" + "b" * 32, "MessageStatus": "undelivered",
                                               "ErrorCode": "30006", "To": CALLER})
    assert status == 204
    (ref,) = [r.decode() for r in redis_client.zrange("ivr:cb:all", 0, -1)]
    callback = redis_client.hgetall(f"ivr:cb:{ref}")
    assert callback[b"text_status"] == b"undelivered" and b"30006" in callback[b"text_error"]
    assert b"landline" in callback[b"text_error"]
    assert redis_client.xlen(STREAM) == 0                         # nothing queued again
    # The next call from that phone is not offered a text at all.
    c = place(HARTFORD + ["dial:busy", "-"])
    assert "text message" not in c.said


def test_stop_from_the_signed_sms_webhook_means_no_text_until_start(place, worker, sms_app, redis_client):
    transport = Transport(DEV_AUTH_TOKEN, app=sms_app)
    # A text queued before the STOP is not sent after it.
    place(HARTFORD + ["dial:busy", "4"])
    status, body = transport.post("/sms", {"MessageSid": "SM" + "c" * 32, "From": CALLER, "To": SENDER,
                                           "Body": " Stop "})
    assert status == 200 and "<Response" in body
    with responses.RequestsMock() as mock:                         # no request may reach Twilio
        worker()
        assert not mock.calls
    assert b"not sent" in b"".join(redis_client.hget(k, "status") or b"" for k in redis_client.keys("ivr:sms:*")
                                   if redis_client.type(k) == b"hash")
    c = place(HARTFORD + ["dial:busy", "-"])
    assert "text message" not in c.said
    transport.post("/sms", {"MessageSid": "SM" + "d" * 32, "From": CALLER, "To": SENDER, "Body": "START"})
    c = place(HARTFORD + ["dial:busy", "-"])
    assert "text message" in c.said
    # Unsigned, or signed with another token: refused, nothing changes.
    assert sms_app.test_client().post("/sms", data={"From": CALLER, "Body": "STOP"}).status_code == 403
    forged = Transport("another-token", app=sms_app)
    assert forged.post("/sms", {"From": CALLER, "Body": "STOP", "MessageSid": "SM" + "e" * 32})[0] == 403
    assert "text message" in place(HARTFORD + ["dial:busy", "-"]).said


@pytest.mark.parametrize("caller", ["anonymous", "+19595550113", "+18005551234"])
def test_withheld_inmate_and_toll_free_caller_ids_are_not_offered_texts(place, caller):
    keys = ["-", "9"] + HARTFORD[1:] if caller == "+19595550113" else HARTFORD
    c = place(keys + ["dial:busy", "-"], caller=caller)
    assert "busy" in c.said and "text message" not in c.said


def test_texts_are_not_offered_when_no_messaging_number_is_set(call):
    c = call("callcenter", HARTFORD + ["dial:busy", "-"])
    assert "busy" in c.said and "text message" not in c.said


@pytest.mark.parametrize("status, code, then", [
    (400, 21610, "stopped"), (400, 21614, "landline"), (400, 21211, "not sent"), (503, None, "retry")])
def test_twilio_refusals_are_recorded_and_only_not_processed_is_tried_again(place, worker, redis_client,
                                                                             status, code, then):
    place(HARTFORD + ["dial:busy", "4"])
    reply = {"code": code, "message": "refused", "more_info": "", "status": status}
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, MESSAGES, body=json.dumps(reply), status=status,
                 content_type="application/json")
        worker()
        assert len(mock.calls) == 1
    (key,) = [k for k in redis_client.keys("ivr:sms:*") if redis_client.type(k) == b"hash"]
    text = redis_client.hgetall(key)
    if then == "retry":
        assert text[b"status"] == b"queued"                 # Twilio did not process it: the job stays pending
        assert redis_client.xpending(STREAM, "workers")["pending"] == 1
        return
    assert text[b"status"] == b"not sent" and str(code).encode() in text[b"error"]
    again = place(HARTFORD + ["dial:busy", "-"])
    assert ("text message" in again.said) is (then == "not sent")


# --- a caller handed over from the payment line (1-888-233-7223) ------------------------------------------

def sent_request(worker):
    """The one request the worker makes to Twilio for what is queued."""
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, MESSAGES, json=twilio_reply(), status=201)
        assert worker() == 1
        (sent,) = mock.calls
    return sent.request


def same_request(one, other) -> bool:
    return ((one.method, one.url, form(one), one.headers["Authorization"])
            == (other.method, other.url, form(other), other.headers["Authorization"]))


@pytest.mark.parametrize("lang", ["en", "es"])
def test_a_caller_handed_over_from_the_payment_line_gets_the_callback_reference_by_text(place, worker, clock,
                                                                                         prompts, lang):
    """The payment line hands the caller over to the call center's menu, where 0 on a Saturday night leaves
    a callback: the reference is offered by text as on 1-800-228-KIDS, and sent the same way."""
    clock.set(SATURDAY_NIGHT)
    callback = ["0", "3", "1", "1", "2"]          # a person: closed; a call back, this number, morning, no message
    handed = place(PAY_TO_CC[lang] + callback + ["1"], line="payments")
    assert prompts.text("pay.to_cc", lang) in handed.said
    assert prompts.text("cb.text.offer", lang) in handed.said
    assert prompts.text("sms.queued", lang) in handed.said and handed.hung_up
    ref = spoken_ref(handed.said, lang)
    from_888 = sent_request(worker)
    fields = form(from_888)
    assert fields["To"] == [CALLER] and fields["From"] == [SENDER]       # from IVR_SMS_FROM, never the line
    assert ref in fields["Body"][0] and "STOP" in fields["Body"][0]
    # The same caller on 1-800-228-KIDS (their one open callback, updated): the very same request.
    direct = place([LANG[lang]] + callback + ["1"])
    assert prompts.text("cb.text.offer", lang) in direct.said
    assert same_request(sent_request(worker), from_888)


def test_a_call_that_began_here_is_checked_for_texts_once_though_it_went_to_the_payment_line_and_back(
        place, sms_app, clock, prompts, monkeypatch):
    """The caller ID, STOP and a landline are looked up at the start of the call; back from the payment line
    (its 9), the call keeps what was found rather than asking Redis again."""
    texts = sms_app.extensions["ivr"].services.texts
    asked: list[str] = []
    may_text = texts.may_text
    monkeypatch.setattr(texts, "may_text", lambda number: asked.append(number) or may_text(number))
    clock.set(SATURDAY_NIGHT)
    back = place(["-", "1", "1", "9", "0", "3", "1", "1", "2"])     # payments, the payment line, 9: back here
    assert prompts.text("pay.to_cc", "en") in back.said and prompts.text("cb.text.offer", "en") in back.said
    assert asked == [CALLER]


@pytest.mark.parametrize("lang", ["en", "es"])
def test_a_caller_handed_over_from_the_payment_line_gets_the_offices_details_by_text(place, worker, prompts, lang):
    option = prompts.text("menu.option", lang, option=prompts.text("xfer.opt.text", lang), key=4)
    handed = place(PAY_TO_CC[lang] + ["5", "2", "1", "dial:busy", "4"], line="payments")
    assert option in handed.said and prompts.text("sms.queued", lang) in handed.said
    from_888 = sent_request(worker)
    assert "(860) 566-8723, 999 Asylum Street, Hartford, CT." in form(from_888)["Body"][0]
    direct = place([LANG[lang], "5", "2", "1", "dial:busy", "4"])
    assert option in direct.said
    assert same_request(sent_request(worker), from_888)


def test_0_after_a_failed_sign_in_on_the_payment_line_leaves_a_callback_with_the_text(place, worker, clock):
    """0 at a failed or locked sign-in reaches the call center's person, who offers a call back after hours;
    its reference is offered by text too."""
    clock.set(SATURDAY_NIGHT)
    wrong = ["1", "718000018#", "1", "0000#", "0001#", "0002#"]     # no such case: three wrong PINs
    c = place(wrong + ["0", "3", "1", "1", "2", "1"], line="payments")
    assert "We can also send your reference number to this phone in a text message." in c.said
    assert c.said.endswith("We will send the text message in a minute. Thank you for calling. Goodbye.")
    assert form(sent_request(worker))["To"] == [CALLER]


def test_a_handed_over_caller_who_stopped_texts_or_withholds_the_number_is_not_offered_them(place, sms_app):
    office = PAY_TO_CC["en"] + ["5", "2", "1", "dial:busy", "-"]
    withheld = place(office, caller="anonymous", line="payments")
    assert "busy" in withheld.said and "text message" not in withheld.said
    transport = Transport(DEV_AUTH_TOKEN, app=sms_app)
    transport.post("/sms", {"MessageSid": "SM" + "f" * 32, "From": CALLER, "To": SENDER, "Body": "STOP"})
    c = place(office, line="payments")
    assert "busy" in c.said and "text message" not in c.said
