//! The one record-size limit: checked when a node opens, enforced before
//! anything is written or published, and an oversized record never costs
//! the records fetched with it. `CaughtUp` says what was refused.

mod common;

use common::*;
use netabase::node::{Event, Netabase, NetabaseConfig, NodeError, Rejection};

fn config_with(limit: usize) -> NetabaseConfig {
    NetabaseConfig {
        max_record_bytes: limit,
        ..NetabaseConfig::loopback()
    }
}

#[test]
fn record_limits_out_of_range_are_refused_when_the_node_opens() {
    let dir = tempfile::tempdir().unwrap();
    for limit in [24 * 1024 * 1024, NetabaseConfig::MAX_RECORD_BYTES + 1, 512] {
        let error = Netabase::new_with_path(dir.path(), config_with(limit)).unwrap_err();
        assert!(
            matches!(
                error,
                NodeError::Config {
                    field: "max_record_bytes",
                    ..
                }
            ),
            "{error:?}"
        );
        // Refused before anything was created.
        assert!(!dir.path().join("netabase.redb").exists());
    }
    let zero = NetabaseConfig {
        max_connections: 0,
        ..NetabaseConfig::loopback()
    };
    assert!(matches!(
        zero.validate(),
        Err(NodeError::Config {
            field: "max_connections",
            ..
        })
    ));
    for copies in [0, 21] {
        let config = NetabaseConfig {
            replication_factor: copies,
            ..NetabaseConfig::loopback()
        };
        assert!(matches!(
            config.validate(),
            Err(NodeError::Config {
                field: "replication_factor",
                ..
            })
        ));
    }
    Netabase::new_with_path(dir.path(), config_with(NetabaseConfig::MAX_RECORD_BYTES)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_path_refuses_a_record_over_the_limit_before_publishing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start_with(&dir.path().join("a"), &[], |c| {
        c.max_record_bytes = NetabaseConfig::MAX_RECORD_BYTES;
    })
    .await;
    let (b, mut b_events) = start_with(&dir.path().join("b"), &[&a], |c| {
        c.max_record_bytes = NetabaseConfig::MAX_RECORD_BYTES;
    })
    .await;
    caught_up_with(&mut b_events, a.peer_id()).await;
    let mut huge = user(1, "huge@x", 1);
    huge.name = "h".repeat(NetabaseConfig::MAX_RECORD_BYTES);
    for result in [
        a.put_record(huge.clone()).await.map(drop),
        a.put_record_locally(huge.clone()).await.map(drop),
        a.put_records_locally(vec![user(2, "ok@x", 2), huge.clone()])
            .await
            .map(drop),
    ] {
        assert!(
            matches!(
                result,
                Err(NodeError::RecordTooLarge {
                    model: "User",
                    limit: NetabaseConfig::MAX_RECORD_BYTES,
                    ..
                })
            ),
            "{result:?}"
        );
    }
    // Nothing was written on A, nothing reached B.
    assert!(users(&a).await.is_empty());
    assert!(matches!(
        b.get_record::<User>(UserKey(1)).await,
        Err(NodeError::NotFound)
    ));
    assert_eq!(b.stats().rejected_total(), 0);
    // Just under the limit works, and the writer reads its own record.
    let mut big = user(3, "big@x", 3);
    big.name = "b".repeat(NetabaseConfig::MAX_RECORD_BYTES - 1024);
    a.put_record(big.clone()).await.unwrap();
    assert_eq!(a.get_record::<User>(UserKey(3)).await.unwrap(), big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_the_fetchers_limit_costs_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start_with(&dir.path().join("a"), &[], |c| {
        c.max_record_bytes = NetabaseConfig::MAX_RECORD_BYTES;
    })
    .await;
    let mut big = user(1, "big@x", 1);
    big.name = "b".repeat(200 * 1024);
    a.put_records_locally(vec![user(0, "small@x", 0), big, user(2, "small2@x", 2)])
        .await
        .unwrap();
    a.put_record_locally(post("not-synced-by-b", &[], None, 1))
        .await
        .unwrap();
    // B keeps the default 60 KiB limit and syncs only `User`.
    let b = Netabase::new_with_path(dir.path().join("b"), config(&[&a], |_| {})).unwrap();
    b.register::<User>().unwrap();
    let mut events = b.subscribe_to_broadcasts();
    b.start_swarm().await.unwrap();
    let (received, refused) = wait_for("B's catch-up with A", &mut events, |e| match e {
        Event::CaughtUp {
            peer,
            received,
            refused,
        } if *peer == a.peer_id() => Some((*received, *refused)),
        Event::CatchUpFailed { reason, .. } => panic!("catch-up failed: {reason:?}"),
        _ => None,
    })
    .await;
    // The small records arrived with the big one; the big one is reported,
    // not silently missing. A model B does not register is not compared.
    assert_eq!((received, refused), (2, 1));
    let ids: Vec<u64> = users(&b).await.iter().map(|u| u.id).collect();
    assert_eq!(ids, vec![0, 2]);
    let stats = b.stats();
    assert_eq!(stats.rejected(Rejection::TooLarge), 1);
    // An honest peer serving a record the fetcher refuses is not punished.
    assert_eq!(stats.sync_messages_refused, 0);
    assert_eq!(stats.peers_banned, 0);
}
