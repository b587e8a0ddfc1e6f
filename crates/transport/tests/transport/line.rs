//! A [`Line`]: calls one at a time on one connection, read and written by the caller.

use dkv_transport::Line;

use super::*;

fn line() -> Line {
    Line::new(client_config())
}

async fn line_echo(line: &Line, addr: &str, n: u64, within: Duration) -> Result<Bytes, CallError> {
    line.call(addr, ECHO, |b| b.extend_from_slice(&n.to_le_bytes()), within).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_answers_its_calls_on_one_connection_even_when_callers_overlap() {
    let server = TestServer::start(Arc::new(TestHandler::default()), server_config()).await;
    let (addr, line) = (server.addr(), Arc::new(line()));
    for n in 0..20 {
        let answer = line_echo(&line, &addr, n, Duration::from_secs(5)).await.unwrap();
        assert_eq!(&answer[..], &echo_answer(n)[..]);
    }
    // Callers that overlap wait their turn, each with its own answer.
    let mut calls = JoinSet::new();
    for n in 100..140 {
        let (line, addr) = (line.clone(), addr.clone());
        calls.spawn(async move { (n, line_echo(&line, &addr, n, Duration::from_secs(10)).await) });
    }
    while let Some(done) = calls.join_next().await {
        let (n, answer) = done.unwrap();
        assert_eq!(&answer.unwrap()[..], &echo_answer(n)[..], "call {n}");
    }
    assert_eq!(server.accepts(), 1, "one connection for every call");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_or_an_oversized_request_keeps_the_line_and_a_timeout_closes_it() {
    let server = TestServer::start(Arc::new(TestHandler::default()), server_config()).await;
    let (addr, line) = (server.addr(), line());
    match line.call(&addr, REFUSE, |_| {}, Duration::from_secs(5)).await {
        Err(CallError::Refused { status, message, .. }) => {
            assert_eq!((status, message.as_str()), (REFUSAL_STATUS, REFUSAL_MESSAGE));
        }
        other => panic!("a refusal: {other:?}"),
    }
    let huge = line.call(&addr, SIZE, |b| b.extend_from_slice(&vec![0; MAX_FRAME + 1]), Duration::from_secs(5)).await;
    assert!(matches!(huge, Err(CallError::Refused { status: 413, .. })), "{huge:?}");
    line_echo(&line, &addr, 1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(server.accepts(), 1, "neither cost the connection");

    // A call past its deadline leaves its answer owed on the connection: the next call opens a
    // new one rather than read that answer as its own.
    let started = Instant::now();
    let hung = line.call(&addr, HANG, |_| {}, Duration::from_millis(200)).await;
    assert!(matches!(hung, Err(CallError::Timeout { .. })), "{hung:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    line.call(&addr, SLOW, |b| b.extend_from_slice(&1u64.to_le_bytes()), Duration::from_secs(5)).await.unwrap();
    assert_eq!(server.accepts(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_connects_again_after_the_server_restarts() {
    let handler = Arc::new(TestHandler::default());
    let server = TestServer::start(handler.clone(), server_config()).await;
    let (port, addr, line) = (server.addr, server.addr(), line());
    line_echo(&line, &addr, 1, Duration::from_secs(5)).await.unwrap();
    server.stop().await;
    let down = line_echo(&line, &addr, 2, Duration::from_secs(5)).await;
    assert!(matches!(down, Err(CallError::Unreachable { .. } | CallError::Lost { .. })), "{down:?}");

    let server = TestServer::start_on(port, handler, server_config()).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match line_echo(&line, &addr, 3, Duration::from_secs(1)).await {
            Ok(answer) => break assert_eq!(&answer[..], &echo_answer(3)[..]),
            Err(e @ (CallError::Unreachable { .. } | CallError::Lost { .. })) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("after the restart: {e}"),
        }
    }
    assert_eq!(server.accepts(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_is_refused_with_the_reason_by_another_cluster_or_by_a_server_that_is_not_dkv() {
    let server = TestServer::start(Arc::new(TestHandler::default()), server_config()).await;
    let wrong = Line::new(ClientConfig { auth: Auth { cluster: CLUSTER.into(), secret: None }, ..client_config() });
    match line_echo(&wrong, &server.addr(), 1, Duration::from_secs(5)).await {
        Err(CallError::Handshake { reason, .. }) => assert!(reason.contains("secret"), "{reason}"),
        other => panic!("no secret: {other:?}"),
    }
    server.stop().await;

    // An HTTP server answers the magic bytes as a bad request: a handshake refusal, which is
    // what a node takes as "this seed does not speak the transport".
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut s, _) = http.accept().await.unwrap();
        let mut request = [0u8; 1024];
        let _ = s.read(&mut request).await;
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
    });
    match line_echo(&line(), &addr, 1, Duration::from_secs(5)).await {
        Err(CallError::Handshake { .. }) => {}
        other => panic!("an HTTP server: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_its_caller_abandons_leaves_no_answer_for_the_next_one() {
    let server = TestServer::start(Arc::new(TestHandler::default()), server_config()).await;
    let (addr, line) = (server.addr(), line());
    line_echo(&line, &addr, 1, Duration::from_secs(5)).await.unwrap();
    // Dropped while it waits for a 300 ms answer, well within its own deadline.
    let slow = line.call(&addr, SLOW, |b| b.extend_from_slice(&300u64.to_le_bytes()), Duration::from_secs(5));
    assert!(timeout(Duration::from_millis(50), slow).await.is_err(), "the slow call should still be waiting");
    let answer = line_echo(&line, &addr, 2, Duration::from_secs(5)).await.unwrap();
    assert_eq!(&answer[..], &echo_answer(2)[..], "the next call gets its own answer");
    assert_eq!(server.accepts(), 2, "on a new connection");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_until_waits_for_its_bound_alone_and_is_given_up_when_it_resolves() {
    let server = TestServer::start(Arc::new(TestHandler::default()), server_config()).await;
    let (addr, line) = (server.addr(), line());
    // A bound that never resolves: the answer decides.
    let body = |b: &mut BytesMut| b.extend_from_slice(&5u64.to_le_bytes());
    let answer = line.call_until(&addr, ECHO, body, std::future::pending(), Duration::MAX).await.unwrap();
    assert_eq!(&answer[..], &echo_answer(5)[..]);

    // A hung call is given up when its bound resolves, not before, and its connection with it.
    let (resolve, resolved) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let _ = resolve.send(());
    });
    let started = Instant::now();
    let bound = async {
        let _ = resolved.await;
    };
    let hung = line.call_until(&addr, HANG, |_| {}, bound, Duration::from_millis(150)).await;
    assert!(matches!(hung, Err(CallError::Timeout { ms: 150, .. })), "{hung:?}");
    assert!(started.elapsed() >= Duration::from_millis(150), "given up after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(2), "given up after {:?}", started.elapsed());
    line_echo(&line, &addr, 6, Duration::from_secs(5)).await.unwrap();
    assert_eq!(server.accepts(), 2, "the next call on a new connection");
    server.stop().await;
}
