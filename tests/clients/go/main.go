// Go client for didit-share-gateway, built by tests/clients/run.sh against
// stubs generated from proto/ at test time (GOPATH mode, Debian's grpc-go).
//
// Usage: go-client GRPC_ADDR SANDBOX_URL SERVICE_CONFIG_JSON
//
// It dials with the shipped gRPC service config
// (proto/didit/share/v1/service_config.json) as the channel's default,
// shares finished KYC and KYB sessions of tenant service-x with service-y,
// imports them as service-y (trust_review true and false), reads the
// google.rpc.ErrorInfo of failed calls, calls grpc.health.v1.Health, checks
// that the service config's retry policy retries an import on UNAVAILABLE
// and not a share, and uses deadlines. Older grpc-go releases (Debian's
// 1.33) apply a retry policy only with GRPC_GO_RETRY=on in the
// environment; run.sh sets it. It also watches session events: a status
// change in the sandbox arrives on the stream, and a reconnect with the last
// event_id brings only later events. Every check prints PASS or FAIL; the exit code is non-zero
// when any check failed.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/ioutil"
	"net/http"
	"os"
	"strings"
	"time"

	sharev1 "github.com/didit-share-gateway/didit-share-gateway/gen/go/didit/share/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	lang        = "go"
	errorDomain = "didit-share-gateway"
	callTimeout = 5 * time.Second
)

// ---- the sandbox's admin API (test setup only; real callers never use it) ----

type application struct {
	Name          string            `json:"name"`
	ApplicationID string            `json:"application_id"`
	Workflows     map[string]string `json:"workflows"`
}

type sandbox struct{ base string }

func (s sandbox) do(method, path string, body interface{}, out interface{}) error {
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("content-type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := ioutil.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// stats returns the sandbox's counters of calls that reached its v3 endpoints.
func (s sandbox) stats() (share, imports int, err error) {
	var out struct {
		ShareCalls  int `json:"share_calls"`
		ImportCalls int `json:"import_calls"`
	}
	err = s.do("GET", "/_sandbox/stats", nil, &out)
	return out.ShareCalls, out.ImportCalls, err
}

func (s sandbox) applications() (map[string]application, error) {
	var apps []application
	if err := s.do("GET", "/_sandbox/applications", nil, &apps); err != nil {
		return nil, err
	}
	m := map[string]application{}
	for _, a := range apps {
		m[a.Name] = a
	}
	for _, n := range []string{"service-x", "service-y"} {
		if m[n].ApplicationID == "" || m[n].Workflows["user"] == "" || m[n].Workflows["business"] == "" {
			return nil, fmt.Errorf("sandbox application %q missing or incomplete: %+v", n, m[n])
		}
	}
	return m, nil
}

// newSession creates a finished session owned by appID and returns its id.
func (s sandbox) newSession(appID, kind, st string) (string, error) {
	var out struct {
		SessionID string `json:"session_id"`
	}
	err := s.do("POST", "/_sandbox/sessions",
		map[string]string{"application_id": appID, "session_kind": kind, "status": st}, &out)
	if err == nil && out.SessionID == "" {
		err = errors.New("sandbox returned no session_id")
	}
	return out.SessionID, err
}

// ---- calling the gateway ----

type client struct {
	share  sharev1.ShareServiceClient
	imp    sharev1.ImportServiceClient
	health healthpb.HealthClient
}

// tenantCtx names the caller's tenant in x-tenant-id and sets a deadline.
func tenantCtx(tenant string, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	return metadata.AppendToOutgoingContext(ctx, "x-tenant-id", tenant), cancel
}

func (c client) shareSession(tenant, sessionID, forApp string) (*sharev1.ShareSessionResponse, error) {
	ctx, cancel := tenantCtx(tenant, callTimeout)
	defer cancel()
	return c.share.ShareSession(ctx, &sharev1.ShareSessionRequest{SessionId: sessionID, ForApplicationId: forApp})
}

func (c client) importSession(tenant, token, workflow, vendorData string, trust bool) (*sharev1.ImportSharedSessionResponse, error) {
	ctx, cancel := tenantCtx(tenant, callTimeout)
	defer cancel()
	return c.imp.ImportSharedSession(ctx, &sharev1.ImportSharedSessionRequest{
		ShareToken: token, WorkflowId: workflow, VendorData: vendorData, TrustReview: trust,
	})
}

// errorInfo returns the gRPC code and the google.rpc.ErrorInfo detail of err.
func errorInfo(err error) (codes.Code, *errdetails.ErrorInfo, []interface{}) {
	st, _ := status.FromError(err)
	details := st.Details()
	for _, d := range details {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code(), info, details
		}
	}
	return st.Code(), nil, details
}

func expectError(err error, code codes.Code, reason string) error {
	if err == nil {
		return fmt.Errorf("call succeeded, want %s/%s", code, reason)
	}
	got, info, details := errorInfo(err)
	if got != code {
		return fmt.Errorf("code %s, want %s (%v)", got, code, err)
	}
	if info == nil {
		return fmt.Errorf("no google.rpc.ErrorInfo in status details (details: %v)", details)
	}
	if info.Reason != reason || info.Domain != errorDomain {
		return fmt.Errorf("ErrorInfo reason=%q domain=%q, want %q/%q", info.Reason, info.Domain, reason, errorDomain)
	}
	return nil
}

// ---- checks ----

type runner struct{ passed, failed int }

func (r *runner) check(name string, f func() error) {
	if err := f(); err != nil {
		r.failed++
		fmt.Printf("[%s] FAIL %s: %v\n", lang, name, err)
		return
	}
	r.passed++
	fmt.Printf("[%s] PASS %s\n", lang, name)
}

func checkShare(resp *sharev1.ShareSessionResponse, err error, forApp string, kind sharev1.SessionKind) error {
	if err != nil {
		return err
	}
	if strings.Count(resp.ShareToken, ".") != 2 {
		return fmt.Errorf("share_token is not a JWT (%d chars)", len(resp.ShareToken))
	}
	if resp.ForApplicationId != forApp || resp.SessionKind != kind {
		return fmt.Errorf("for_application_id=%q session_kind=%s, want %q/%s", resp.ForApplicationId, resp.SessionKind, forApp, kind)
	}
	if resp.ExpiresAt == nil || !resp.ExpiresAt.AsTime().After(time.Now()) {
		return fmt.Errorf("expires_at %v is not in the future", resp.ExpiresAt)
	}
	return nil
}

func checkImport(resp *sharev1.ImportSharedSessionResponse, err error, from, vendorData string,
	kind sharev1.SessionKind, st sharev1.SessionStatus, raw string) error {
	if err != nil {
		return err
	}
	var problems []string
	if resp.SessionId == "" || resp.SessionId == from {
		problems = append(problems, fmt.Sprintf("session_id=%q", resp.SessionId))
	}
	if resp.SessionKind != kind {
		problems = append(problems, fmt.Sprintf("session_kind=%s want %s", resp.SessionKind, kind))
	}
	if resp.Status != st || resp.StatusRaw != raw {
		problems = append(problems, fmt.Sprintf("status=%s status_raw=%q want %s/%q", resp.Status, resp.StatusRaw, st, raw))
	}
	if resp.SharedFromSession != from {
		problems = append(problems, fmt.Sprintf("shared_from_session=%q want %q", resp.SharedFromSession, from))
	}
	if resp.VendorData != vendorData {
		problems = append(problems, fmt.Sprintf("vendor_data=%q want %q", resp.VendorData, vendorData))
	}
	if kind == sharev1.SessionKind_SESSION_KIND_USER && len(resp.IdVerifications) == 0 {
		problems = append(problems, "id_verifications empty")
	}
	if kind == sharev1.SessionKind_SESSION_KIND_BUSINESS && len(resp.RegistryChecks) == 0 {
		problems = append(problems, "registry_checks empty")
	}
	if !json.Valid(resp.RawJson) || len(resp.RawJson) == 0 {
		problems = append(problems, fmt.Sprintf("raw_json not JSON (%d bytes)", len(resp.RawJson)))
	}
	if resp.Replayed {
		problems = append(problems, "replayed=true on a first import")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// tamper changes the first character of the JWT signature, so the token
// keeps its shape but no longer verifies.
func tamper(token string) string {
	i := strings.LastIndex(token, ".") + 1
	if i <= 0 || i >= len(token) {
		return token + "x"
	}
	c := byte('A')
	if token[i] == 'A' {
		c = 'B'
	}
	return token[:i] + string(c) + token[i+1:]
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: go-client GRPC_ADDR SANDBOX_URL SERVICE_CONFIG_JSON")
		os.Exit(2)
	}
	addr, sb := os.Args[1], sandbox{strings.TrimRight(os.Args[2], "/")}
	r := &runner{}
	defer func() {
		fmt.Printf("%s: %d passed, %d failed\n", lang, r.passed, r.failed)
		if r.failed > 0 {
			os.Exit(1)
		}
	}()

	apps, err := sb.applications()
	if err != nil {
		r.check("setup", func() error { return err })
		return
	}
	x, y := apps["service-x"], apps["service-y"]

	// The shipped service config, as every caller should pass it: a broken
	// file fails here (DialContext validates it).
	var conn *grpc.ClientConn
	r.check("connect_with_service_config", func() error {
		serviceConfig, err := ioutil.ReadFile(os.Args[3])
		if err != nil {
			return err
		}
		dialCtx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		conn, err = grpc.DialContext(dialCtx, addr, grpc.WithInsecure(), grpc.WithBlock(),
			grpc.WithDefaultServiceConfig(string(serviceConfig)))
		return err
	})
	if conn == nil {
		return
	}
	defer conn.Close()
	c := client{sharev1.NewShareServiceClient(conn), sharev1.NewImportServiceClient(conn), healthpb.NewHealthClient(conn)}

	for _, svc := range []struct{ check, name string }{
		{"health_overall", ""},
		{"health_share_service", "didit.share.v1.ShareService"},
		{"health_import_service", "didit.share.v1.ImportService"},
		{"health_session_service", "didit.share.v1.SessionService"},
	} {
		svc := svc
		r.check(svc.check, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			resp, err := c.health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc.name})
			if err != nil {
				return err
			}
			if resp.Status != healthpb.HealthCheckResponse_SERVING {
				return fmt.Errorf("status %s, want SERVING", resp.Status)
			}
			return nil
		})
	}

	// KYC and KYB: share from service-x, import into service-y twice (each
	// import needs its own token: a token imports once per application).
	for _, k := range []struct {
		name, kind, status string
		protoKind          sharev1.SessionKind
		rawTrusted         string
		rawReview          string
	}{
		{"kyc", "user", "Approved", sharev1.SessionKind_SESSION_KIND_USER, "Approved", "In Review"},
		{"kyb", "business", "APPROVED", sharev1.SessionKind_SESSION_KIND_BUSINESS, "APPROVED", "IN_REVIEW"},
	} {
		k := k
		orig, err := sb.newSession(x.ApplicationID, k.kind, k.status)
		if err != nil {
			r.check(k.name+"_setup", func() error { return err })
			continue
		}
		var token string
		r.check(k.name+"_share", func() error {
			resp, err := c.shareSession("service-x", orig, y.ApplicationID)
			if err == nil {
				token = resp.ShareToken
			}
			return checkShare(resp, err, y.ApplicationID, k.protoKind)
		})
		r.check(k.name+"_import_trust_review_true", func() error {
			if token == "" {
				return errors.New("no token from the share check")
			}
			vd := lang + "-" + k.name + "-trusted"
			resp, err := c.importSession("service-y", token, y.Workflows[k.kind], vd, true)
			if err := checkImport(resp, err, orig, vd, k.protoKind, sharev1.SessionStatus_SESSION_STATUS_APPROVED, k.rawTrusted); err != nil {
				return err
			}
			// The retry is replayed: the same message with replayed = true
			// (the gateway sends the stored bytes and appends the flag).
			again, err := c.importSession("service-y", token, y.Workflows[k.kind], vd, true)
			if err != nil {
				return fmt.Errorf("retry: %v", err)
			}
			want := proto.Clone(resp).(*sharev1.ImportSharedSessionResponse)
			want.Replayed = true
			if !proto.Equal(again, want) {
				return fmt.Errorf("the retry is not the first answer with replayed=true (replayed=%v)", again.Replayed)
			}
			return nil
		})
		r.check(k.name+"_import_trust_review_false", func() error {
			share, err := c.shareSession("service-x", orig, y.ApplicationID)
			if err != nil {
				return fmt.Errorf("second share: %v", err)
			}
			vd := lang + "-" + k.name + "-review"
			resp, err := c.importSession("service-y", share.ShareToken, y.Workflows[k.kind], vd, false)
			return checkImport(resp, err, orig, vd, k.protoKind, sharev1.SessionStatus_SESSION_STATUS_IN_REVIEW, k.rawReview)
		})
	}

	// Errors: the reason is read from the google.rpc.ErrorInfo status detail.
	orig, err := sb.newSession(x.ApplicationID, "user", "Approved")
	if err != nil {
		r.check("errors_setup", func() error { return err })
		return
	}
	r.check("error_invalid_token", func() error {
		share, err := c.shareSession("service-x", orig, y.ApplicationID)
		if err != nil {
			return fmt.Errorf("share: %v", err)
		}
		_, err = c.importSession("service-y", tamper(share.ShareToken), y.Workflows["user"], lang+"-bad", false)
		return expectError(err, codes.FailedPrecondition, "SHARE_TOKEN_INVALID")
	})
	r.check("error_wrong_application", func() error {
		share, err := c.shareSession("service-x", orig, y.ApplicationID)
		if err != nil {
			return fmt.Errorf("share: %v", err)
		}
		// Minted for service-y, imported by service-x.
		_, err = c.importSession("service-x", share.ShareToken, x.Workflows["user"], lang+"-wrong", false)
		return expectError(err, codes.PermissionDenied, "SHARE_TOKEN_WRONG_APPLICATION")
	})
	r.check("error_partner_not_allowed", func() error {
		// service-x's demo policy lists only service-y: a service-z token is refused.
		z, ok := apps["service-z"]
		if !ok {
			return fmt.Errorf("no service-z in /_sandbox/applications")
		}
		zs, err := sb.newSession(z.ApplicationID, "user", "Approved")
		if err != nil {
			return fmt.Errorf("service-z session: %v", err)
		}
		share, err := c.shareSession("service-z", zs, x.ApplicationID)
		if err != nil {
			return fmt.Errorf("share: %v", err)
		}
		_, err = c.importSession("service-x", share.ShareToken, x.Workflows["user"], lang+"-z", false)
		return expectError(err, codes.PermissionDenied, "PARTNER_NOT_ALLOWED")
	})
	r.check("error_unknown_tenant", func() error {
		_, err := c.shareSession("no-such-tenant", orig, y.ApplicationID)
		return expectError(err, codes.Unauthenticated, "UNKNOWN_TENANT")
	})
	r.check("error_invalid_request", func() error {
		_, err := c.shareSession("service-x", "not-a-uuid", y.ApplicationID)
		if err := expectError(err, codes.InvalidArgument, "INVALID_REQUEST"); err != nil {
			return err
		}
		_, _, details := errorInfo(err)
		for _, d := range details {
			if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 {
				return nil
			}
		}
		return fmt.Errorf("no google.rpc.BadRequest field violation in details: %v", details)
	})

	// The service config's retry policy: an import that fails UNAVAILABLE
	// (Didit answered 503, which the gateway does not retry for imports) is
	// retried by the channel and succeeds on the third attempt; a share that
	// fails UNAVAILABLE is not retried (each attempt may mint a token).
	r.check("service_config_retries_import_on_unavailable", func() error {
		share, err := c.shareSession("service-x", orig, y.ApplicationID)
		if err != nil {
			return fmt.Errorf("share: %v", err)
		}
		_, before, err := sb.stats()
		if err != nil {
			return err
		}
		if err := sb.do("PUT", "/_sandbox/faults", map[string]interface{}{
			"fail_next": 2, "error_status": 503, "endpoints": []string{"import"}}, nil); err != nil {
			return fmt.Errorf("inject faults: %v", err)
		}
		defer sb.do("DELETE", "/_sandbox/faults", nil, nil)
		ctx, cancel := tenantCtx("service-y", 20*time.Second)
		defer cancel()
		vd := lang + "-retried"
		resp, err := c.imp.ImportSharedSession(ctx, &sharev1.ImportSharedSessionRequest{
			ShareToken: share.ShareToken, WorkflowId: y.Workflows["user"], VendorData: vd})
		if err != nil {
			return fmt.Errorf("import was not retried to success: %v", err)
		}
		_, after, err := sb.stats()
		if err != nil {
			return err
		}
		if after-before != 3 {
			return fmt.Errorf("%d import calls reached the sandbox, want 3 (two 503s, then success)", after-before)
		}
		return checkImport(resp, nil, orig, vd, sharev1.SessionKind_SESSION_KIND_USER,
			sharev1.SessionStatus_SESSION_STATUS_IN_REVIEW, "In Review")
	})
	r.check("service_config_does_not_retry_share", func() error {
		before, _, err := sb.stats()
		if err != nil {
			return err
		}
		if err := sb.do("PUT", "/_sandbox/faults", map[string]interface{}{
			"fail_next": 1, "error_status": 500, "endpoints": []string{"share"}}, nil); err != nil {
			return fmt.Errorf("inject faults: %v", err)
		}
		defer sb.do("DELETE", "/_sandbox/faults", nil, nil)
		_, err = c.shareSession("service-x", orig, y.ApplicationID)
		if err := expectError(err, codes.Unavailable, "UPSTREAM_UNAVAILABLE"); err != nil {
			return err
		}
		after, _, err := sb.stats()
		if err != nil {
			return err
		}
		if after-before != 1 {
			return fmt.Errorf("%d share calls reached the sandbox, want 1 (no retry)", after-before)
		}
		return nil
	})

	// Deadlines: a 5 s deadline on a real call succeeds; a 200 ms deadline
	// while the sandbox answers after 1 s ends in DEADLINE_EXCEEDED.
	r.check("deadline_5s_ok", func() error {
		ctx, cancel := tenantCtx("service-x", 5*time.Second)
		defer cancel()
		_, err := c.share.ShareSession(ctx, &sharev1.ShareSessionRequest{SessionId: orig, ForApplicationId: y.ApplicationID})
		return err
	})
	r.check("deadline_exceeded", func() error {
		if err := sb.do("PUT", "/_sandbox/faults", map[string]int{"latency_ms": 1000}, nil); err != nil {
			return fmt.Errorf("inject latency: %v", err)
		}
		defer sb.do("DELETE", "/_sandbox/faults", nil, nil)
		ctx, cancel := tenantCtx("service-x", 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.share.ShareSession(ctx, &sharev1.ShareSessionRequest{SessionId: orig, ForApplicationId: y.ApplicationID})
		if code := status.Code(err); code != codes.DeadlineExceeded {
			return fmt.Errorf("code %s, want DeadlineExceeded (%v)", code, err)
		}
		if el := time.Since(start); el > 900*time.Millisecond {
			return fmt.Errorf("took %v, the deadline was 200ms", el)
		}
		return nil
	})

	// Session events: watch service-x's events, change a status in the
	// sandbox (it delivers a signed webhook to the gateway), receive it;
	// reconnect with the last event_id and receive only what came after.
	sessions := sharev1.NewSessionServiceClient(conn)
	type eventStream interface {
		Recv() (*sharev1.SessionEvent, error)
		Header() (metadata.MD, error)
	}
	watch := func(ctx context.Context, after string) (eventStream, error) {
		s, err := sessions.WatchSessionEvents(ctx, &sharev1.WatchSessionEventsRequest{
			AfterEventId: after, WebhookTypes: []string{"status.updated"}})
		if err != nil {
			return nil, err
		}
		// The subscription exists once the response headers are in.
		if _, err := s.Header(); err != nil {
			return nil, err
		}
		return s, nil
	}
	eventFor := func(s eventStream, sess string) (*sharev1.SessionEvent, error) {
		for {
			e, err := s.Recv()
			if err != nil {
				return nil, err
			}
			if e.SessionId == sess {
				return e, nil
			}
		}
	}
	setStatus := func(sess, st string) error {
		return sb.do("PATCH", "/_sandbox/sessions/"+sess, map[string]string{"status": st}, nil)
	}
	r.check("watch_session_events_and_resume", func() error {
		sess, err := sb.newSession(x.ApplicationID, "user", "In Review")
		if err != nil {
			return err
		}
		ctx, cancel := tenantCtx("service-x", 30*time.Second)
		stream, err := watch(ctx, "")
		if err != nil {
			cancel()
			return err
		}
		if err := setStatus(sess, "Approved"); err != nil {
			cancel()
			return err
		}
		first, err := eventFor(stream, sess)
		cancel()
		if err != nil {
			return err
		}
		if first.Status != sharev1.SessionStatus_SESSION_STATUS_APPROVED || first.StatusRaw != "Approved" {
			return fmt.Errorf("status=%s status_raw=%q", first.Status, first.StatusRaw)
		}
		gctx, gcancel := tenantCtx("service-x", callTimeout)
		got, err := sessions.GetSession(gctx, &sharev1.GetSessionRequest{SessionId: sess})
		gcancel()
		if err != nil {
			return fmt.Errorf("GetSession: %v", err)
		}
		if got.Status != sharev1.SessionStatus_SESSION_STATUS_APPROVED {
			return fmt.Errorf("GetSession status=%s", got.Status)
		}
		// Disconnected: a change happens meanwhile; the cursor brings it, once.
		if err := setStatus(sess, "Declined"); err != nil {
			return err
		}
		ctx, cancel = tenantCtx("service-x", 30*time.Second)
		defer cancel()
		resumed, err := watch(ctx, first.EventId)
		if err != nil {
			return err
		}
		second, err := eventFor(resumed, sess)
		if err != nil {
			return err
		}
		if second.EventId == first.EventId || second.StatusRaw != "Declined" {
			return fmt.Errorf("after the cursor: event %s status_raw=%q, want a new event with \"Declined\"",
				second.EventId, second.StatusRaw)
		}
		return nil
	})
	r.check("get_session_unknown", func() error {
		ctx, cancel := tenantCtx("service-x", callTimeout)
		defer cancel()
		_, err := sessions.GetSession(ctx, &sharev1.GetSessionRequest{SessionId: "00000000-0000-4000-8000-000000000000"})
		return expectError(err, codes.NotFound, "SESSION_NOT_FOUND")
	})
}
