"""Python client for didit-share-gateway, run by tests/clients/run.sh against
stubs generated from proto/ at test time (grpcio + grpcio-tools in a venv).

Usage: python client.py GRPC_ADDR SANDBOX_URL SERVICE_CONFIG_JSON
       (generated stubs on PYTHONPATH)

It opens its channel with the shipped gRPC service config
(proto/didit/share/v1/service_config.json) as the default config, shares
finished KYC and KYB sessions of tenant service-x with service-y, imports them
as service-y (trust_review true and false), reads the google.rpc.ErrorInfo of
failed calls, calls grpc.health.v1.Health, checks that the retry policy
retries an import on UNAVAILABLE and not a share, uses deadlines, and
watches session events (a status change in the sandbox arrives; a
reconnect with the cursor brings only later events). Every check prints PASS or FAIL; the exit code is non-zero when any
check failed.
"""

import json
import sys
import time
import urllib.request

import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from didit.share.v1 import share_pb2, share_pb2_grpc

LANG = "python"
ERROR_DOMAIN = "didit-share-gateway"
TIMEOUT = 5.0  # seconds: the deadline set on every call


# ---- the sandbox's admin API (test setup only; real callers never use it) ----

class Sandbox:
    def __init__(self, base):
        self.base = base.rstrip("/")

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def stat(self, name):
        """One counter of GET /_sandbox/stats (calls that reached the v3 endpoints)."""
        return self.call("GET", "/_sandbox/stats")[name]

    def applications(self):
        apps = {a["name"]: a for a in self.call("GET", "/_sandbox/applications")}
        for name in ("service-x", "service-y"):
            a = apps.get(name) or {}
            if not a.get("application_id") or not all(a.get("workflows", {}).get(k) for k in ("user", "business")):
                raise RuntimeError(f"sandbox application {name!r} missing or incomplete: {a}")
        return apps

    def new_session(self, app_id, kind, status):
        out = self.call("POST", "/_sandbox/sessions",
                        {"application_id": app_id, "session_kind": kind, "status": status})
        if not out or not out.get("session_id"):
            raise RuntimeError(f"sandbox returned no session_id: {out}")
        return out["session_id"]


# ---- calling the gateway ----

def tenant(name):
    """Metadata naming the caller's tenant."""
    return (("x-tenant-id", name),)


class Client:
    def __init__(self, channel):
        self.share_stub = share_pb2_grpc.ShareServiceStub(channel)
        self.import_stub = share_pb2_grpc.ImportServiceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)

    def share(self, tenant_id, session_id, for_app, timeout=TIMEOUT):
        return self.share_stub.ShareSession(
            share_pb2.ShareSessionRequest(session_id=session_id, for_application_id=for_app),
            metadata=tenant(tenant_id), timeout=timeout)

    def import_(self, tenant_id, token, workflow, vendor_data, trust, timeout=TIMEOUT):
        return self.import_stub.ImportSharedSession(
            share_pb2.ImportSharedSessionRequest(
                share_token=token, workflow_id=workflow, vendor_data=vendor_data, trust_review=trust),
            metadata=tenant(tenant_id), timeout=timeout)


def details(err):
    """The unpacked google.rpc.Status details of a failed call."""
    st = rpc_status.from_call(err)
    out = []
    for any_ in (st.details if st else []):
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest,
                    error_details_pb2.RetryInfo):
            if any_.Is(cls.DESCRIPTOR):
                msg = cls()
                any_.Unpack(msg)
                out.append(msg)
    return out


def expect_error(call, code, reason):
    try:
        call()
    except grpc.RpcError as err:
        assert err.code() == code, f"code {err.code()}, want {code} ({err.details()})"
        infos = [d for d in details(err) if isinstance(d, error_details_pb2.ErrorInfo)]
        assert infos, f"no google.rpc.ErrorInfo in status details ({err.details()})"
        assert (infos[0].reason, infos[0].domain) == (reason, ERROR_DOMAIN), \
            f"ErrorInfo reason={infos[0].reason!r} domain={infos[0].domain!r}, want {reason}/{ERROR_DOMAIN}"
        return err
    raise AssertionError(f"call succeeded, want {code}/{reason}")


# ---- checks ----

class Runner:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, name, fn):
        try:
            fn()
        except grpc.RpcError as e:
            self.failed += 1
            print(f"[{LANG}] FAIL {name}: {e.code()}: {e.details()}", flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported, none is fatal
            self.failed += 1
            print(f"[{LANG}] FAIL {name}: {type(e).__name__}: {e}", flush=True)
        else:
            self.passed += 1
            print(f"[{LANG}] PASS {name}", flush=True)


def check_share(resp, for_app, kind):
    assert resp.share_token.count(".") == 2, "share_token is not a JWT"
    assert (resp.for_application_id, resp.session_kind) == (for_app, kind), \
        f"for_application_id={resp.for_application_id} session_kind={resp.session_kind}"
    assert resp.HasField("expires_at") and resp.expires_at.seconds > time.time(), \
        f"expires_at not in the future: {resp.expires_at}"


def check_import(resp, orig, vendor_data, kind, status, raw):
    problems = []
    if not resp.session_id or resp.session_id == orig:
        problems.append(f"session_id={resp.session_id!r}")
    if resp.session_kind != kind:
        problems.append(f"session_kind={share_pb2.SessionKind.Name(resp.session_kind)}")
    if (resp.status, resp.status_raw) != (status, raw):
        problems.append(f"status={share_pb2.SessionStatus.Name(resp.status)} status_raw={resp.status_raw!r}"
                        f" want {share_pb2.SessionStatus.Name(status)}/{raw!r}")
    if resp.shared_from_session != orig:
        problems.append(f"shared_from_session={resp.shared_from_session!r}")
    if resp.vendor_data != vendor_data:
        problems.append(f"vendor_data={resp.vendor_data!r}")
    if kind == share_pb2.SESSION_KIND_USER and not resp.id_verifications:
        problems.append("id_verifications empty")
    if kind == share_pb2.SESSION_KIND_BUSINESS and not resp.registry_checks:
        problems.append("registry_checks empty")
    try:
        assert isinstance(json.loads(resp.raw_json), dict)
    except Exception:  # noqa: BLE001
        problems.append(f"raw_json not a JSON object ({len(resp.raw_json)} bytes)")
    if resp.replayed:
        problems.append("replayed=true on a first import")
    assert not problems, "; ".join(problems)


def tamper(token):
    """Change the first character of the JWT signature: same shape, bad signature."""
    i = token.rfind(".") + 1
    if i <= 0 or i >= len(token):
        return token + "x"
    return token[:i] + ("B" if token[i] == "A" else "A") + token[i + 1:]


def run(r, addr, sb, service_config_path):
    apps = sb.applications()
    x, y = apps["service-x"], apps["service-y"]
    x_app, y_app = x["application_id"], y["application_id"]

    # The shipped service config, as every caller should pass it. A file that
    # is not JSON fails here; gRPC turns an invalid config into a channel that
    # never becomes ready.
    with open(service_config_path, encoding="utf-8") as f:
        service_config = json.dumps(json.load(f))
    channel = grpc.insecure_channel(addr, options=[("grpc.service_config", service_config)])
    failed_before = r.failed
    r.check("connect_with_service_config",
            lambda: grpc.channel_ready_future(channel).result(timeout=TIMEOUT))
    if r.failed > failed_before:
        channel.close()
        return
    c = Client(channel)

    for name, service in (("health_overall", ""),
                          ("health_share_service", "didit.share.v1.ShareService"),
                          ("health_import_service", "didit.share.v1.ImportService"),
                          ("health_session_service", "didit.share.v1.SessionService")):
        def health(service=service):
            resp = c.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING, f"status {resp.status}"
        r.check(name, health)

    # KYC and KYB: share from service-x, import into service-y twice (each
    # import needs its own token: a token imports once per application).
    for name, kind, status, proto_kind, raw_trusted, raw_review in (
            ("kyc", "user", "Approved", share_pb2.SESSION_KIND_USER, "Approved", "In Review"),
            ("kyb", "business", "APPROVED", share_pb2.SESSION_KIND_BUSINESS, "APPROVED", "IN_REVIEW")):
        orig = sb.new_session(x_app, kind, status)
        workflow = y["workflows"][kind]
        token = []

        def share(orig=orig, proto_kind=proto_kind, token=token):
            resp = c.share("service-x", orig, y_app)
            check_share(resp, y_app, proto_kind)
            token.append(resp.share_token)

        def import_trusted(name=name, orig=orig, workflow=workflow, proto_kind=proto_kind,
                           raw=raw_trusted, token=token):
            assert token, "no token from the share check"
            vd = f"{LANG}-{name}-trusted"
            first = c.import_("service-y", token[0], workflow, vd, True)
            check_import(first, orig, vd, proto_kind, share_pb2.SESSION_STATUS_APPROVED, raw)
            # The retry is replayed: the same message with replayed = true
            # (the gateway sends the stored bytes and appends the flag).
            want = share_pb2.ImportSharedSessionResponse()
            want.CopyFrom(first)
            want.replayed = True
            again = c.import_("service-y", token[0], workflow, vd, True)
            assert again == want, f"the retry is not the first answer with replayed=true: {again.replayed=}"

        def import_review(name=name, orig=orig, workflow=workflow, proto_kind=proto_kind, raw=raw_review):
            fresh = c.share("service-x", orig, y_app).share_token
            vd = f"{LANG}-{name}-review"
            check_import(c.import_("service-y", fresh, workflow, vd, False),
                         orig, vd, proto_kind, share_pb2.SESSION_STATUS_IN_REVIEW, raw)

        r.check(f"{name}_share", share)
        r.check(f"{name}_import_trust_review_true", import_trusted)
        r.check(f"{name}_import_trust_review_false", import_review)

    # Errors: the reason is read from the google.rpc.ErrorInfo status detail.
    orig = sb.new_session(x_app, "user", "Approved")

    def invalid_token():
        bad = tamper(c.share("service-x", orig, y_app).share_token)
        expect_error(lambda: c.import_("service-y", bad, y["workflows"]["user"], f"{LANG}-bad", False),
                     grpc.StatusCode.FAILED_PRECONDITION, "SHARE_TOKEN_INVALID")

    def wrong_application():
        # Minted for service-y, imported by service-x.
        token = c.share("service-x", orig, y_app).share_token
        expect_error(lambda: c.import_("service-x", token, x["workflows"]["user"], f"{LANG}-wrong", False),
                     grpc.StatusCode.PERMISSION_DENIED, "SHARE_TOKEN_WRONG_APPLICATION")

    def partner_not_allowed():
        # service-x's demo policy lists only service-y: a service-z token is refused.
        z = apps["service-z"]
        token = c.share("service-z", sb.new_session(z["application_id"], "user", "Approved"), x_app).share_token
        expect_error(lambda: c.import_("service-x", token, x["workflows"]["user"], f"{LANG}-z", False),
                     grpc.StatusCode.PERMISSION_DENIED, "PARTNER_NOT_ALLOWED")

    def unknown_tenant():
        expect_error(lambda: c.share("no-such-tenant", orig, y_app),
                     grpc.StatusCode.UNAUTHENTICATED, "UNKNOWN_TENANT")

    def invalid_request():
        err = expect_error(lambda: c.share("service-x", "not-a-uuid", y_app),
                           grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
        assert any(isinstance(d, error_details_pb2.BadRequest) and d.field_violations for d in details(err)), \
            "no google.rpc.BadRequest field violation in details"

    r.check("error_invalid_token", invalid_token)
    r.check("error_wrong_application", wrong_application)
    r.check("error_partner_not_allowed", partner_not_allowed)
    r.check("error_unknown_tenant", unknown_tenant)
    r.check("error_invalid_request", invalid_request)

    # The service config's retry policy: an import that fails UNAVAILABLE
    # (Didit answered 503, which the gateway does not retry for imports) is
    # retried by the channel and succeeds on the third attempt; a share that
    # fails UNAVAILABLE is not retried (each attempt may mint a token).
    def retries_import():
        token = c.share("service-x", orig, y_app).share_token
        before = sb.stat("import_calls")
        sb.call("PUT", "/_sandbox/faults", {"fail_next": 2, "error_status": 503, "endpoints": ["import"]})
        try:
            vd = f"{LANG}-retried"
            resp = c.import_("service-y", token, y["workflows"]["user"], vd, False, timeout=20.0)
            calls = sb.stat("import_calls") - before
            assert calls == 3, f"{calls} import calls reached the sandbox, want 3 (two 503s, then success)"
            check_import(resp, orig, vd, share_pb2.SESSION_KIND_USER, share_pb2.SESSION_STATUS_IN_REVIEW,
                         "In Review")
        finally:
            sb.call("DELETE", "/_sandbox/faults")

    def does_not_retry_share():
        before = sb.stat("share_calls")
        sb.call("PUT", "/_sandbox/faults", {"fail_next": 1, "error_status": 500, "endpoints": ["share"]})
        try:
            expect_error(lambda: c.share("service-x", orig, y_app),
                         grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE")
            calls = sb.stat("share_calls") - before
            assert calls == 1, f"{calls} share calls reached the sandbox, want 1 (no retry)"
        finally:
            sb.call("DELETE", "/_sandbox/faults")

    r.check("service_config_retries_import_on_unavailable", retries_import)
    r.check("service_config_does_not_retry_share", does_not_retry_share)

    # Deadlines: a 5 s deadline on a real call succeeds; a 200 ms deadline
    # while the sandbox answers after 1 s ends in DEADLINE_EXCEEDED.
    r.check("deadline_5s_ok", lambda: c.share("service-x", orig, y_app, timeout=5.0))

    def deadline_exceeded():
        sb.call("PUT", "/_sandbox/faults", {"latency_ms": 1000})
        try:
            start = time.monotonic()
            try:
                c.share("service-x", orig, y_app, timeout=0.2)
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED, f"got {err.code()}: {err.details()}"
            else:
                raise AssertionError("call succeeded, want DEADLINE_EXCEEDED")
            took = time.monotonic() - start
            assert took < 0.9, f"took {took:.3f}s, the deadline was 0.2s"
        finally:
            sb.call("DELETE", "/_sandbox/faults")

    r.check("deadline_exceeded", deadline_exceeded)

    # Session events: watch service-x's events, change a status in the
    # sandbox (it delivers a signed webhook to the gateway), receive it;
    # reconnect with the last event_id and receive only what came after.
    sessions = share_pb2_grpc.SessionServiceStub(channel)

    def watch(after=""):
        req = share_pb2.WatchSessionEventsRequest(after_event_id=after, webhook_types=["status.updated"])
        stream = sessions.WatchSessionEvents(req, metadata=tenant("service-x"), timeout=30.0)
        stream.initial_metadata()  # the subscription exists once the headers are in
        return stream

    def watch_and_resume():
        sess = sb.new_session(x_app, "user", "In Review")
        stream = watch()
        sb.call("PATCH", f"/_sandbox/sessions/{sess}", {"status": "Approved"})
        first = next(e for e in stream if e.session_id == sess)
        stream.cancel()
        assert (first.status, first.status_raw) == (share_pb2.SESSION_STATUS_APPROVED, "Approved"), \
            f"status={first.status} status_raw={first.status_raw!r}"
        assert json.loads(first.raw_json)["session_id"] == sess, "raw_json is not the webhook body"
        got = sessions.GetSession(share_pb2.GetSessionRequest(session_id=sess),
                                  metadata=tenant("service-x"), timeout=TIMEOUT)
        assert got.status == share_pb2.SESSION_STATUS_APPROVED, f"GetSession status={got.status}"
        # Disconnected: a change happens meanwhile; the cursor brings it, once.
        sb.call("PATCH", f"/_sandbox/sessions/{sess}", {"status": "Declined"})
        resumed = watch(first.event_id)
        second = next(e for e in resumed if e.session_id == sess)
        resumed.cancel()
        assert second.event_id != first.event_id, "the event before the cursor came again"
        assert second.status_raw == "Declined", f"after the cursor: {second.status_raw!r}, want 'Declined'"

    def unknown_session():
        expect_error(lambda: sessions.GetSession(
            share_pb2.GetSessionRequest(session_id="00000000-0000-4000-8000-000000000000"),
            metadata=tenant("service-x"), timeout=TIMEOUT),
            grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")

    r.check("watch_session_events_and_resume", watch_and_resume)
    r.check("get_session_unknown", unknown_session)
    channel.close()


def main():
    if len(sys.argv) != 4:
        print("usage: client.py GRPC_ADDR SANDBOX_URL SERVICE_CONFIG_JSON", file=sys.stderr)
        return 2
    r = Runner()
    try:
        run(r, sys.argv[1], Sandbox(sys.argv[2]), sys.argv[3])
    except Exception as e:  # noqa: BLE001
        r.failed += 1
        print(f"[{LANG}] FAIL setup: {type(e).__name__}: {e}", flush=True)
    print(f"{LANG}: {r.passed} passed, {r.failed} failed", flush=True)
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
