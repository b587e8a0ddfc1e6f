use super::*;

const V: u8 = 2;

fn member(id: u64, state: NodeState) -> Member {
    Member {
        id: NodeId(id),
        addr: format!("10.0.0.{id}:8080"),
        tokens: dkv_placement::tokens_for(id, 128).into(),
        state,
        last_seen_ms: 1_700_000_000_000 + id,
    }
}

fn view() -> View {
    View {
        epoch: 41,
        nodes: (1..=5).map(|i| member(i, [NodeState::Normal, NodeState::Joining][i as usize % 2])).collect(),
    }
}

fn round_trip<T: Compact + PartialEq + std::fmt::Debug + Clone>(value: T) {
    let bytes = encode(&value, V);
    assert_eq!(bytes[0], V, "the version leads");
    assert_eq!(decode::<T>(&bytes, V), Ok(value));
}

#[test]
fn every_message_round_trips() {
    let v = view();
    round_trip(v.clone());
    round_trip(View::default());
    round_trip(HeartbeatAnswer {
        epoch: 41,
        digest: Some(v.digest()),
        nodes: None,
        changes: None,
        now_ms: Some(7),
        clock: Some(ClusterClock { offset_ms: i64::MIN, error_ms: 3, clocks: 101 }),
    });
    round_trip(HeartbeatAnswer {
        epoch: 41,
        digest: Some(v.digest()),
        nodes: Some(v.nodes.clone()),
        changes: Some(Changes {
            since: 39,
            members: v.nodes[..2].to_vec(),
            removed: vec![NodeId(9), NodeId(u64::MAX)],
        }),
        now_ms: None,
        clock: None,
    });
    round_trip(IdRequest {
        keys: Some(5),
        clock_offset_ms: Some(-3),
        coordinating_writes: Some(false),
        epoch: Some(41),
        digest: Some(Digest(u64::MAX)),
        load: Some(crate::load::Load {
            requests: 7,
            window_ms: 1000,
            p99_us: Some(900),
            hints_pending: 2,
            moves: vec![crate::load::Move {
                kind: crate::load::MoveKind::Leave,
                active: true,
                keys: 3,
                bytes: 30,
                planned_keys: Some(9),
                planned_bytes: None,
                permille: 333,
            }],
        }),
        seed_clock_offset_ms: Some(-12),
        seed_clock_error_ms: Some(1),
        ..IdRequest::id(NodeId(3))
    });
    round_trip(IdRequest::id(NodeId(3)));
    round_trip(RegisterRequest {
        addr: "h:1".into(),
        id: Some(NodeId(1)),
        tokens: Some(vec![0, 1, u64::MAX]),
        state: Some(NodeState::Leaving),
        vnodes: Some(128),
        view: Some(v.clone()),
        cluster: Some("dkv".into()),
    });
    round_trip(RegisterRequest { addr: "h:1".into(), ..Default::default() });
    round_trip(RegisterResponse { id: NodeId(8), epoch: 2, nodes: v.nodes.clone(), seed_fresh: false });
    round_trip(LeaveRequest { id: NodeId(8), done: true });
    round_trip(RemoveRequest { id: NodeId(8), force: true });
}

#[test]
fn a_member_is_its_tokens_as_fixed_width_integers() {
    let v = view();
    let compact = encode(&v, V).len();
    let json = serde_json::to_vec(&v).unwrap().len();
    // 128 tokens of 8 bytes, plus id, address, state, time and lengths.
    assert!(compact < 5 * (128 * 8 + 40), "{compact} bytes for 5 members");
    assert!(json > 2 * compact, "JSON {json} bytes against {compact}");
}

#[test]
fn other_versions_and_malformed_bodies_are_refused() {
    let bytes = encode(&view(), V);
    assert_eq!(decode::<View>(&bytes, V + 1), Err(CompactError::Version { got: V, want: V + 1 }));
    assert_eq!(decode::<View>(&[], V), Err(CompactError::Empty));
    assert!(matches!(decode::<View>(&bytes[..bytes.len() - 1], V), Err(CompactError::Malformed(_))));
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(decode::<View>(&longer, V), Err(CompactError::Malformed(_))));
    // One member whose tokens are 7 bytes.
    let wire = WireView {
        epoch: 1,
        nodes: vec![WireMember {
            id: 1,
            addr: "h:1".into(),
            state: NodeState::Normal,
            last_seen_ms: 0,
            tokens: Tokens([].into()),
        }],
    };
    let mut odd = postcard::to_allocvec(&wire).unwrap();
    let at = odd.len() - 1;
    odd[at] = 7;
    odd.extend_from_slice(&[0; 7]);
    odd.insert(0, V);
    assert!(matches!(decode::<View>(&odd, V), Err(CompactError::Malformed(_))));
    odd[at + 1] = 8;
    odd.push(0);
    assert!(decode::<View>(&odd, V).is_ok(), "the same with 8 bytes is one token");
}

#[test]
fn media_types_name_their_version() {
    assert_eq!(content_type(2), "application/x-dkv-postcard; v=2");
    assert_eq!(compact_version("application/x-dkv-postcard; v=2"), Some(2));
    assert_eq!(compact_version("Application/X-DKV-Postcard;V=\"3\""), Some(3));
    assert_eq!(compact_version("application/x-dkv-postcard"), Some(0));
    assert_eq!(compact_version("application/json"), None);
    assert!(accepts("application/x-dkv-postcard; v=2, application/json; q=0.5", 2));
    assert!(!accepts("application/x-dkv-postcard; v=1, application/json", 2));
    assert!(!accepts("*/*", 2), "only a node that names it gets it");
    assert!(!accepts("application/json", 2));
}

#[test]
fn a_heartbeat_of_the_first_version_2_release_reads_without_load() {
    // That release's heartbeat: the same fields, without `load` at the end.
    #[derive(Serialize)]
    struct Before {
        id: u64,
        keys: Option<u64>,
        clock_offset_ms: Option<i64>,
        coordinating_writes: Option<bool>,
        epoch: Option<u64>,
        digest: Option<u64>,
    }
    let before = Before {
        id: 7,
        keys: Some(3),
        clock_offset_ms: Some(-2),
        coordinating_writes: None,
        epoch: Some(9),
        digest: Some(11),
    };
    let body = postcard::to_extend(&before, vec![2]).unwrap();
    let got: IdRequest = decode(&body, 2).expect("an older heartbeat");
    assert_eq!((got.id, got.keys, got.epoch, got.digest), (NodeId(7), Some(3), Some(9), Some(Digest(11))));
    assert!(got.load.is_none());
    // Cut anywhere before `load`, it is still refused.
    assert!(decode::<IdRequest>(&body[..body.len() - 1], 2).is_err());
}

#[test]
fn answers_and_heartbeats_without_the_clock_fields_read_as_before() {
    // An older seed's answer ends after `now_ms`.
    #[derive(Serialize)]
    struct OlderAnswer {
        epoch: u64,
        digest: Option<u64>,
        nodes: Option<Vec<WireMember>>,
        changes: Option<WireChanges>,
        now_ms: Option<u64>,
    }
    let older = OlderAnswer { epoch: 4, digest: Some(5), nodes: None, changes: None, now_ms: Some(6) };
    let body = postcard::to_extend(&older, vec![V]).unwrap();
    let got: HeartbeatAnswer = decode(&body, V).expect("an older seed's answer");
    assert_eq!((got.epoch, got.now_ms, got.clock), (4, Some(6), None));
    // What this seed answers an older node (no `clock`) is what that node reads: the same bytes.
    let answer =
        HeartbeatAnswer { epoch: 4, digest: Some(Digest(5)), nodes: None, changes: None, now_ms: Some(6), clock: None };
    assert_eq!(encode(&answer, V)[..body.len()], body[..]);
    assert_eq!(encode(&answer, V).len(), body.len() + 1, "one byte for the absent clock");

    // A heartbeat with `load` and without the seed clock (the release before this one).
    let hb = IdRequest { keys: Some(1), load: Some(crate::load::Load::default()), ..IdRequest::id(NodeId(3)) };
    let full = encode(&hb, V);
    let got: IdRequest = decode(&full[..full.len() - 1], V).expect("a heartbeat without the seed clock");
    assert_eq!(got, hb);
    // A malformed seed clock is refused, not read as absent.
    let mut bad = full.clone();
    *bad.last_mut().unwrap() = 1;
    assert!(decode::<IdRequest>(&bad, V).is_err());
}
