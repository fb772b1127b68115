// Java client for didit-share-gateway, built by tests/clients/run.sh against
// stubs generated from proto/ at test time (Debian's grpc-java, Netty
// transport, plain javac).
//
// Usage: java DiditClient GRPC_ADDR SANDBOX_URL SERVICE_CONFIG_JSON
//
// It builds its channel with the shipped gRPC service config
// (proto/didit/share/v1/service_config.json) as the default config, with
// retries enabled, shares finished KYC and KYB sessions of tenant service-x
// with service-y, imports them as service-y (trust_review true and false),
// reads the google.rpc.ErrorInfo of failed calls, calls
// grpc.health.v1.Health, checks that the retry policy retries an import on
// UNAVAILABLE and not a share, uses deadlines, and watches session events
// (a status change in the sandbox arrives on the stream; a reconnect with the
// last event_id brings only later events). Every check prints PASS or FAIL; the exit code is non-zero
// when any check failed.

import com.didit.share.v1.GetSessionRequest;
import com.didit.share.v1.GetSessionResponse;
import com.didit.share.v1.ImportServiceGrpc;
import com.didit.share.v1.ImportSharedSessionRequest;
import com.didit.share.v1.ImportSharedSessionResponse;
import com.didit.share.v1.SessionEvent;
import com.didit.share.v1.SessionKind;
import com.didit.share.v1.SessionServiceGrpc;
import com.didit.share.v1.SessionStatus;
import com.didit.share.v1.ShareServiceGrpc;
import com.didit.share.v1.ShareSessionRequest;
import com.didit.share.v1.ShareSessionResponse;
import com.didit.share.v1.WatchSessionEventsRequest;
import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.Context;
import io.grpc.ForwardingClientCall;
import io.grpc.ForwardingClientCallListener;
import io.grpc.ManagedChannel;
import io.grpc.MethodDescriptor;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

public final class DiditClient {
  static final String LANG = "java";
  static final String ERROR_DOMAIN = "didit-share-gateway";
  static final Metadata.Key<String> TENANT =
      Metadata.Key.of("x-tenant-id", Metadata.ASCII_STRING_MARSHALLER);

  interface Check {
    void run() throws Exception;
  }

  static int passed, failed;

  static void check(String name, Check c) {
    try {
      c.run();
      passed++;
      System.out.println("[" + LANG + "] PASS " + name);
    } catch (Throwable t) {
      failed++;
      System.out.println("[" + LANG + "] FAIL " + name + ": " + t);
    }
  }

  static void require(boolean ok, String what) {
    if (!ok) throw new AssertionError(what);
  }

  // ---- calling the gateway ----

  final ManagedChannel channel;

  DiditClient(ManagedChannel channel) {
    this.channel = channel;
  }

  /** A ShareService stub for one tenant (x-tenant-id) with a 5 s deadline. */
  ShareServiceGrpc.ShareServiceBlockingStub share(String tenant) {
    return ShareServiceGrpc.newBlockingStub(channel)
        .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(tenantHeaders(tenant)))
        .withDeadlineAfter(5, TimeUnit.SECONDS);
  }

  ImportServiceGrpc.ImportServiceBlockingStub imports(String tenant) {
    return ImportServiceGrpc.newBlockingStub(channel)
        .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(tenantHeaders(tenant)))
        .withDeadlineAfter(5, TimeUnit.SECONDS);
  }

  static Metadata tenantHeaders(String tenant) {
    Metadata md = new Metadata();
    md.put(TENANT, tenant);
    return md;
  }

  ShareSessionResponse shareSession(String tenant, String sessionId, String forApp) {
    return share(tenant)
        .shareSession(
            ShareSessionRequest.newBuilder()
                .setSessionId(sessionId)
                .setForApplicationId(forApp)
                .build());
  }

  ImportSharedSessionResponse importSession(
      String tenant, String token, String workflow, String vendorData, boolean trust) {
    return imports(tenant)
        .importSharedSession(
            ImportSharedSessionRequest.newBuilder()
                .setShareToken(token)
                .setWorkflowId(workflow)
                .setVendorData(vendorData)
                .setTrustReview(trust)
                .build());
  }

  /** The google.rpc.ErrorInfo detail of a failed call, or null. */
  static ErrorInfo errorInfo(Throwable t) throws InvalidProtocolBufferException {
    com.google.rpc.Status st = StatusProto.fromThrowable(t);
    if (st == null) return null;
    for (Any detail : st.getDetailsList()) {
      if (detail.is(ErrorInfo.class)) return detail.unpack(ErrorInfo.class);
    }
    return null;
  }

  static StatusRuntimeException expectError(Check call, Status.Code code, String reason)
      throws Exception {
    try {
      call.run();
    } catch (StatusRuntimeException e) {
      require(
          e.getStatus().getCode() == code,
          "code " + e.getStatus().getCode() + ", want " + code + " (" + e + ")");
      ErrorInfo info = errorInfo(e);
      require(info != null, "no google.rpc.ErrorInfo in status details (" + e + ")");
      require(
          info.getReason().equals(reason) && info.getDomain().equals(ERROR_DOMAIN),
          "ErrorInfo reason=" + info.getReason() + " domain=" + info.getDomain()
              + ", want " + reason + "/" + ERROR_DOMAIN);
      return e;
    }
    throw new AssertionError("call succeeded, want " + code + "/" + reason);
  }

  static void checkShare(ShareSessionResponse r, String forApp, SessionKind kind) {
    require(r.getShareToken().split("\\.", -1).length == 3, "share_token is not a JWT");
    require(
        r.getForApplicationId().equals(forApp) && r.getSessionKind() == kind,
        "for_application_id=" + r.getForApplicationId() + " session_kind=" + r.getSessionKind());
    require(
        r.hasExpiresAt() && r.getExpiresAt().getSeconds() > Instant.now().getEpochSecond(),
        "expires_at not in the future: " + r.getExpiresAt());
  }

  static void checkImport(
      ImportSharedSessionResponse r,
      String from,
      String vendorData,
      SessionKind kind,
      SessionStatus status,
      String raw) {
    List<String> problems = new ArrayList<>();
    if (r.getSessionId().isEmpty() || r.getSessionId().equals(from))
      problems.add("session_id=" + r.getSessionId());
    if (r.getSessionKind() != kind) problems.add("session_kind=" + r.getSessionKind());
    if (r.getStatus() != status || !r.getStatusRaw().equals(raw))
      problems.add("status=" + r.getStatus() + " status_raw=" + r.getStatusRaw()
          + " want " + status + "/" + raw);
    if (!r.getSharedFromSession().equals(from))
      problems.add("shared_from_session=" + r.getSharedFromSession());
    if (!r.getVendorData().equals(vendorData)) problems.add("vendor_data=" + r.getVendorData());
    if (kind == SessionKind.SESSION_KIND_USER && r.getIdVerificationsCount() == 0)
      problems.add("id_verifications empty");
    if (kind == SessionKind.SESSION_KIND_BUSINESS && r.getRegistryChecksCount() == 0)
      problems.add("registry_checks empty");
    try {
      require(Json.parse(r.getRawJson().toStringUtf8()) instanceof Map, "raw_json not an object");
    } catch (Throwable t) {
      problems.add("raw_json: " + t.getMessage());
    }
    if (r.getReplayed()) problems.add("replayed=true on a first import");
    require(problems.isEmpty(), String.join("; ", problems));
  }

  /** Changes the first character of the JWT signature: same shape, bad signature. */
  static String tamper(String token) {
    int i = token.lastIndexOf('.') + 1;
    if (i <= 0 || i >= token.length()) return token + "x";
    char c = token.charAt(i) == 'A' ? 'B' : 'A';
    return token.substring(0, i) + c + token.substring(i + 1);
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 3) {
      System.err.println("usage: DiditClient GRPC_ADDR SANDBOX_URL SERVICE_CONFIG_JSON");
      System.exit(2);
    }
    String addr = args[0];
    Sandbox sb = new Sandbox(args[1].replaceAll("/+$", ""));
    ManagedChannel[] channel = {null};
    // The shipped service config, as every caller should pass it: a file
    // that is not valid JSON, or not a valid service config, fails here
    // (build() parses it).
    check("connect_with_service_config", () -> {
      int colon = addr.lastIndexOf(':');
      channel[0] =
          NettyChannelBuilder.forAddress(addr.substring(0, colon), Integer.parseInt(addr.substring(colon + 1)))
              .usePlaintext()
              .defaultServiceConfig(serviceConfig(Path.of(args[2])))
              .enableRetry()
              .build();
    });
    if (channel[0] != null) {
      try {
        run(new DiditClient(channel[0]), sb);
      } catch (Throwable t) {
        failed++;
        System.out.println("[" + LANG + "] FAIL setup: " + t);
      } finally {
        channel[0].shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
      }
    }
    System.out.println(LANG + ": " + passed + " passed, " + failed + " failed");
    System.exit(failed > 0 ? 1 : 0);
  }

  /** The service config file as the Map that defaultServiceConfig wants (numbers as Double). */
  @SuppressWarnings("unchecked")
  static Map<String, ?> serviceConfig(Path file) throws Exception {
    Object parsed = Json.parse(Files.readString(file, StandardCharsets.UTF_8));
    if (!(parsed instanceof Map)) throw new IllegalArgumentException(file + ": not a JSON object");
    return (Map<String, ?>) parsed;
  }

  static void run(DiditClient c, Sandbox sb) throws Exception {
    Map<String, Object> x = sb.application("service-x");
    Map<String, Object> y = sb.application("service-y");
    String xApp = (String) x.get("application_id");
    String yApp = (String) y.get("application_id");

    String[][] healthChecks = {
      {"health_overall", ""},
      {"health_share_service", "didit.share.v1.ShareService"},
      {"health_import_service", "didit.share.v1.ImportService"},
      {"health_session_service", "didit.share.v1.SessionService"},
    };
    for (String[] h : healthChecks) {
      check(h[0], () -> {
        HealthCheckResponse r = HealthGrpc.newBlockingStub(c.channel)
            .withDeadlineAfter(5, TimeUnit.SECONDS)
            .check(HealthCheckRequest.newBuilder().setService(h[1]).build());
        require(r.getStatus() == HealthCheckResponse.ServingStatus.SERVING, "status " + r.getStatus());
      });
    }

    // KYC and KYB: share from service-x, import into service-y twice (each
    // import needs its own token: a token imports once per application).
    Object[][] kinds = {
      {"kyc", "user", "Approved", SessionKind.SESSION_KIND_USER, "Approved", "In Review"},
      {"kyb", "business", "APPROVED", SessionKind.SESSION_KIND_BUSINESS, "APPROVED", "IN_REVIEW"},
    };
    for (Object[] k : kinds) {
      String name = (String) k[0], kind = (String) k[1];
      SessionKind protoKind = (SessionKind) k[3];
      String workflow = Sandbox.workflow(y, kind);
      String orig = sb.newSession(xApp, kind, (String) k[2]);
      String[] token = {null};
      check(name + "_share", () -> {
        ShareSessionResponse r = c.shareSession("service-x", orig, yApp);
        checkShare(r, yApp, protoKind);
        token[0] = r.getShareToken();
      });
      check(name + "_import_trust_review_true", () -> {
        require(token[0] != null, "no token from the share check");
        String vd = LANG + "-" + name + "-trusted";
        ImportSharedSessionResponse first = c.importSession("service-y", token[0], workflow, vd, true);
        checkImport(first, orig, vd, protoKind, SessionStatus.SESSION_STATUS_APPROVED, (String) k[4]);
        // The retry is replayed: the same message with replayed = true
        // (the gateway sends the stored bytes and appends the flag).
        ImportSharedSessionResponse again = c.importSession("service-y", token[0], workflow, vd, true);
        require(again.equals(first.toBuilder().setReplayed(true).build()),
            "the retry is not the first answer with replayed=true (replayed=" + again.getReplayed() + ")");
      });
      check(name + "_import_trust_review_false", () -> {
        String fresh = c.shareSession("service-x", orig, yApp).getShareToken();
        String vd = LANG + "-" + name + "-review";
        checkImport(c.importSession("service-y", fresh, workflow, vd, false),
            orig, vd, protoKind, SessionStatus.SESSION_STATUS_IN_REVIEW, (String) k[5]);
      });
    }

    // Errors: the reason is read from the google.rpc.ErrorInfo status detail.
    String orig = sb.newSession(xApp, "user", "Approved");
    check("error_invalid_token", () -> {
      String bad = tamper(c.shareSession("service-x", orig, yApp).getShareToken());
      expectError(() -> c.importSession("service-y", bad, Sandbox.workflow(y, "user"), LANG + "-bad", false),
          Status.Code.FAILED_PRECONDITION, "SHARE_TOKEN_INVALID");
    });
    check("error_wrong_application", () -> {
      // Minted for service-y, imported by service-x.
      String token = c.shareSession("service-x", orig, yApp).getShareToken();
      expectError(() -> c.importSession("service-x", token, Sandbox.workflow(x, "user"), LANG + "-wrong", false),
          Status.Code.PERMISSION_DENIED, "SHARE_TOKEN_WRONG_APPLICATION");
    });
    check("error_partner_not_allowed", () -> {
      // service-x's demo policy lists only service-y: a service-z token is refused.
      String zApp = (String) sb.application("service-z").get("application_id");
      String token = c.shareSession("service-z", sb.newSession(zApp, "user", "Approved"), xApp).getShareToken();
      expectError(() -> c.importSession("service-x", token, Sandbox.workflow(x, "user"), LANG + "-z", false),
          Status.Code.PERMISSION_DENIED, "PARTNER_NOT_ALLOWED");
    });
    check("error_unknown_tenant", () -> expectError(
        () -> c.shareSession("no-such-tenant", orig, yApp),
        Status.Code.UNAUTHENTICATED, "UNKNOWN_TENANT"));
    check("error_invalid_request", () -> {
      StatusRuntimeException e = expectError(
          () -> c.shareSession("service-x", "not-a-uuid", yApp),
          Status.Code.INVALID_ARGUMENT, "INVALID_REQUEST");
      boolean violations = false;
      for (Any d : StatusProto.fromThrowable(e).getDetailsList()) {
        if (d.is(BadRequest.class) && d.unpack(BadRequest.class).getFieldViolationsCount() > 0) violations = true;
      }
      require(violations, "no google.rpc.BadRequest field violation in details");
    });

    // The service config's retry policy: an import that fails UNAVAILABLE
    // (Didit answered 503, which the gateway does not retry for imports) is
    // retried by the channel and succeeds on the third attempt; a share that
    // fails UNAVAILABLE is not retried (each attempt may mint a token).
    check("service_config_retries_import_on_unavailable", () -> {
      String token = c.shareSession("service-x", orig, yApp).getShareToken();
      long before = sb.stat("import_calls");
      sb.call("PUT", "/_sandbox/faults",
          "{\"fail_next\":2,\"error_status\":503,\"endpoints\":[\"import\"]}");
      try {
        String vd = LANG + "-retried";
        ImportSharedSessionResponse r = c.imports("service-y")
            .withDeadlineAfter(20, TimeUnit.SECONDS)
            .importSharedSession(ImportSharedSessionRequest.newBuilder()
                .setShareToken(token)
                .setWorkflowId(Sandbox.workflow(y, "user"))
                .setVendorData(vd)
                .build());
        long calls = sb.stat("import_calls") - before;
        require(calls == 3, calls + " import calls reached the sandbox, want 3 (two 503s, then success)");
        checkImport(r, orig, vd, SessionKind.SESSION_KIND_USER, SessionStatus.SESSION_STATUS_IN_REVIEW,
            "In Review");
      } finally {
        sb.call("DELETE", "/_sandbox/faults", null);
      }
    });
    check("service_config_does_not_retry_share", () -> {
      long before = sb.stat("share_calls");
      sb.call("PUT", "/_sandbox/faults",
          "{\"fail_next\":1,\"error_status\":500,\"endpoints\":[\"share\"]}");
      try {
        expectError(() -> c.shareSession("service-x", orig, yApp),
            Status.Code.UNAVAILABLE, "UPSTREAM_UNAVAILABLE");
        long calls = sb.stat("share_calls") - before;
        require(calls == 1, calls + " share calls reached the sandbox, want 1 (no retry)");
      } finally {
        sb.call("DELETE", "/_sandbox/faults", null);
      }
    });

    // Deadlines: a 5 s deadline on a real call succeeds; a 200 ms deadline
    // while the sandbox answers after 1 s ends in DEADLINE_EXCEEDED.
    ShareSessionRequest req =
        ShareSessionRequest.newBuilder().setSessionId(orig).setForApplicationId(yApp).build();
    check("deadline_5s_ok", () -> c.share("service-x").withDeadlineAfter(5, TimeUnit.SECONDS).shareSession(req));
    check("deadline_exceeded", () -> {
      sb.call("PUT", "/_sandbox/faults", "{\"latency_ms\":1000}");
      try {
        long start = System.nanoTime();
        try {
          c.share("service-x").withDeadlineAfter(200, TimeUnit.MILLISECONDS).shareSession(req);
          throw new AssertionError("call succeeded, want DEADLINE_EXCEEDED");
        } catch (StatusRuntimeException e) {
          require(e.getStatus().getCode() == Status.Code.DEADLINE_EXCEEDED, "got " + e);
        }
        long ms = (System.nanoTime() - start) / 1_000_000;
        require(ms < 900, "took " + ms + " ms, the deadline was 200 ms");
      } finally {
        sb.call("DELETE", "/_sandbox/faults", null);
      }
    });

    // Session events: watch service-x's events, change a status in the
    // sandbox (it delivers a signed webhook to the gateway), receive it;
    // reconnect with the last event_id and receive only what came after.
    check("watch_session_events_and_resume", () -> {
      String sess = sb.newSession(xApp, "user", "In Review");
      Context.CancellableContext first = Context.current().withCancellation();
      SessionEvent approved;
      try {
        BlockingQueue<Object> events = c.watch(first, "");
        sb.setStatus(sess, "Approved");
        approved = eventFor(events, sess);
      } finally {
        first.cancel(null);
      }
      require(approved.getStatus() == SessionStatus.SESSION_STATUS_APPROVED
          && approved.getStatusRaw().equals("Approved"), "event " + approved.getStatusRaw());
      GetSessionResponse got = c.sessions("service-x")
          .getSession(GetSessionRequest.newBuilder().setSessionId(sess).build());
      require(got.getStatus() == SessionStatus.SESSION_STATUS_APPROVED, "GetSession " + got.getStatus());
      // Disconnected: a change happens meanwhile; the cursor brings it, once.
      sb.setStatus(sess, "Declined");
      Context.CancellableContext second = Context.current().withCancellation();
      try {
        SessionEvent next = eventFor(c.watch(second, approved.getEventId()), sess);
        require(!next.getEventId().equals(approved.getEventId()) && next.getStatusRaw().equals("Declined"),
            "after the cursor: " + next.getEventId() + " " + next.getStatusRaw() + ", want a new Declined");
      } finally {
        second.cancel(null);
      }
    });
    check("get_session_unknown", () -> expectError(
        () -> c.sessions("service-x").getSession(
            GetSessionRequest.newBuilder().setSessionId("00000000-0000-4000-8000-000000000000").build()),
        Status.Code.NOT_FOUND, "SESSION_NOT_FOUND"));
  }

  /** A SessionService stub for one tenant with a 5 s deadline. */
  SessionServiceGrpc.SessionServiceBlockingStub sessions(String tenant) {
    return SessionServiceGrpc.newBlockingStub(channel)
        .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(tenantHeaders(tenant)))
        .withDeadlineAfter(5, TimeUnit.SECONDS);
  }

  /** Opens WatchSessionEvents of service-x in `ctx` (async stub: a blocking
   * stub runs its callbacks only inside next()) and waits for the response
   * headers: the subscription exists once they are in. The queue gets each
   * event, then the Throwable or END that ends the stream. */
  BlockingQueue<Object> watch(Context.CancellableContext ctx, String after) throws Exception {
    CountDownLatch headers = new CountDownLatch(1);
    BlockingQueue<Object> events = new LinkedBlockingQueue<>();
    SessionServiceGrpc.SessionServiceStub stub = SessionServiceGrpc.newStub(channel)
        .withInterceptors(
            MetadataUtils.newAttachHeadersInterceptor(tenantHeaders("service-x")), onHeaders(headers))
        .withDeadlineAfter(30, TimeUnit.SECONDS);
    WatchSessionEventsRequest req = WatchSessionEventsRequest.newBuilder()
        .setAfterEventId(after).addWebhookTypes("status.updated").build();
    ctx.run(() -> stub.watchSessionEvents(req, new StreamObserver<SessionEvent>() {
      @Override public void onNext(SessionEvent e) { events.add(e); }
      @Override public void onError(Throwable t) { events.add(t); }
      @Override public void onCompleted() { events.add(END); }
    }));
    require(headers.await(10, TimeUnit.SECONDS), "no response headers within 10 s");
    return events;
  }

  static final Object END = new Object();

  static SessionEvent eventFor(BlockingQueue<Object> events, String session) throws Exception {
    while (true) {
      Object o = events.poll(30, TimeUnit.SECONDS);
      if (o == null) throw new AssertionError("no event for " + session + " within 30 s");
      if (o instanceof Throwable) throw new AssertionError("the stream failed: " + o);
      if (o == END) throw new AssertionError("the stream ended without an event for " + session);
      SessionEvent e = (SessionEvent) o;
      if (e.getSessionId().equals(session)) return e;
    }
  }

  /** Counts `latch` down when the call's response headers arrive. */
  static ClientInterceptor onHeaders(CountDownLatch latch) {
    return new ClientInterceptor() {
      @Override
      public <Q, R> ClientCall<Q, R> interceptCall(MethodDescriptor<Q, R> m, CallOptions o, Channel next) {
        return new ForwardingClientCall.SimpleForwardingClientCall<Q, R>(next.newCall(m, o)) {
          @Override
          public void start(Listener<R> listener, Metadata md) {
            super.start(new ForwardingClientCallListener.SimpleForwardingClientCallListener<R>(listener) {
              @Override
              public void onHeaders(Metadata headers) {
                latch.countDown();
                super.onHeaders(headers);
              }
            }, md);
          }
        };
      }
    };
  }

  // ---- the sandbox's admin API (test setup only; real callers never use it) ----

  static final class Sandbox {
    final String base;
    final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    Sandbox(String base) {
      this.base = base;
    }

    String call(String method, String path, String body) throws Exception {
      HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + path))
          .timeout(Duration.ofSeconds(10))
          .header("content-type", "application/json")
          .method(method, body == null
              ? HttpRequest.BodyPublishers.noBody()
              : HttpRequest.BodyPublishers.ofString(body, StandardCharsets.UTF_8));
      HttpResponse<String> r = http.send(b.build(), HttpResponse.BodyHandlers.ofString());
      if (r.statusCode() / 100 != 2)
        throw new IllegalStateException(method + " " + path + ": HTTP " + r.statusCode() + ": " + r.body());
      return r.body();
    }

    @SuppressWarnings("unchecked")
    Map<String, Object> application(String name) throws Exception {
      for (Object o : (List<Object>) Json.parse(call("GET", "/_sandbox/applications", null))) {
        Map<String, Object> app = (Map<String, Object>) o;
        if (name.equals(app.get("name"))) return app;
      }
      throw new IllegalStateException("sandbox has no application " + name);
    }

    /** One counter of GET /_sandbox/stats (calls that reached the v3 endpoints). */
    @SuppressWarnings("unchecked")
    long stat(String name) throws Exception {
      Object v = ((Map<String, Object>) Json.parse(call("GET", "/_sandbox/stats", null))).get(name);
      if (!(v instanceof Double)) throw new IllegalStateException("sandbox stats have no " + name);
      return ((Double) v).longValue();
    }

    /** PATCH /_sandbox/sessions/{id}: a status change, which fires status.updated. */
    void setStatus(String session, String status) throws Exception {
      call("PATCH", "/_sandbox/sessions/" + session, "{\"status\":" + Json.quote(status) + "}");
    }

    @SuppressWarnings("unchecked")
    static String workflow(Map<String, Object> app, String kind) {
      return (String) ((Map<String, Object>) app.get("workflows")).get(kind);
    }

    @SuppressWarnings("unchecked")
    String newSession(String appId, String kind, String status) throws Exception {
      String body = "{\"application_id\":" + Json.quote(appId) + ",\"session_kind\":" + Json.quote(kind)
          + ",\"status\":" + Json.quote(status) + "}";
      Object id = ((Map<String, Object>) Json.parse(call("POST", "/_sandbox/sessions", body))).get("session_id");
      if (!(id instanceof String)) throw new IllegalStateException("sandbox returned no session_id");
      return (String) id;
    }
  }

  /** Just enough JSON for the sandbox's admin answers (no dependency on a JSON library). */
  static final class Json {
    final String s;
    int i;

    Json(String s) {
      this.s = s;
    }

    static Object parse(String s) {
      Json j = new Json(s);
      Object v = j.value();
      j.ws();
      if (j.i != s.length()) throw new IllegalArgumentException("trailing data at " + j.i);
      return v;
    }

    static String quote(String v) {
      StringBuilder b = new StringBuilder("\"");
      for (char ch : v.toCharArray()) {
        if (ch == '"' || ch == '\\') b.append('\\').append(ch);
        else if (ch < 0x20) b.append(String.format("\\u%04x", (int) ch));
        else b.append(ch);
      }
      return b.append('"').toString();
    }

    void ws() {
      while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++;
    }

    void expect(char ch) {
      ws();
      if (i >= s.length() || s.charAt(i) != ch) throw new IllegalArgumentException("expected " + ch + " at " + i);
      i++;
    }

    Object value() {
      ws();
      if (i >= s.length()) throw new IllegalArgumentException("unexpected end");
      char ch = s.charAt(i);
      if (ch == '{') {
        Map<String, Object> m = new LinkedHashMap<>();
        i++;
        ws();
        if (s.charAt(i) == '}') { i++; return m; }
        do {
          ws();
          String k = string();
          expect(':');
          m.put(k, value());
          ws();
        } while (s.charAt(i++) == ',');
        if (s.charAt(i - 1) != '}') throw new IllegalArgumentException("expected } at " + (i - 1));
        return m;
      }
      if (ch == '[') {
        List<Object> l = new ArrayList<>();
        i++;
        ws();
        if (s.charAt(i) == ']') { i++; return l; }
        do {
          l.add(value());
          ws();
        } while (s.charAt(i++) == ',');
        if (s.charAt(i - 1) != ']') throw new IllegalArgumentException("expected ] at " + (i - 1));
        return l;
      }
      if (ch == '"') return string();
      for (String lit : new String[] {"true", "false", "null"}) {
        if (s.startsWith(lit, i)) {
          i += lit.length();
          return lit.equals("null") ? null : Boolean.valueOf(lit);
        }
      }
      int start = i;
      while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) i++;
      if (start == i) throw new IllegalArgumentException("bad JSON at " + i);
      return Double.valueOf(s.substring(start, i));
    }

    String string() {
      expect('"');
      StringBuilder b = new StringBuilder();
      while (true) {
        char ch = s.charAt(i++);
        if (ch == '"') return b.toString();
        if (ch != '\\') { b.append(ch); continue; }
        char e = s.charAt(i++);
        switch (e) {
          case 'n': b.append('\n'); break;
          case 't': b.append('\t'); break;
          case 'r': b.append('\r'); break;
          case 'b': b.append('\b'); break;
          case 'f': b.append('\f'); break;
          case 'u': b.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; break;
          default: b.append(e);
        }
      }
    }
  }
}
