//! The running services' announcements (`<prefix>_services`): a writer starting beside older
//! readers knows every one of them as soon as it has started, without waiting for them to renew.

use std::time::Duration;

use ccp_runtime::compat::{Announcement, Announcer};
use ccp_tests::{namespace, nats, test_settings};
use chrono::Utc;

#[tokio::test]
async fn a_starting_writer_knows_every_announced_reader_at_once() {
    let settings = test_settings("announce");
    let ns = namespace(&settings);
    let client = nats().await;
    let js = async_nats::jetstream::new(client.clone());
    let bucket = format!("{}_services", ns.prefix());
    let store = ccp_runtime::streams::own_bucket(&js, bucket.clone(), Duration::from_secs(60), "test", 1)
        .await
        .expect("bucket");
    // Two readers of an older revision, announced just now and not renewing during the test
    // (a renewal is what a watch of new puts only would wait for), and a withdrawn one.
    let current = ccp_schemas::compat::reading();
    assert!(current > 1, "the contract has older revisions to announce");
    for (key, contract) in [("ccp-proxy.old1", current - 1), ("ccp-projector.old2", 1)] {
        let a = Announcement {
            service: key.split('.').next().unwrap_or_default().into(),
            instance: key.into(),
            version: "0.0.1 (old)".into(),
            contract,
            at: Utc::now(),
        };
        store.put(key, serde_json::to_vec(&a).expect("json").into()).await.expect("put");
    }
    store.put("ccp-proxy.gone", b"{}".to_vec().into()).await.expect("put");
    store.purge("ccp-proxy.gone").await.expect("purge");

    let announcer = Announcer::start(client, &ns, "ccp-admin", 1).await.expect("announce");
    let oldest = announcer.readers.older_than(current).expect("the older readers are known at start");
    assert_eq!(oldest.contract, 1, "the oldest of both: {oldest:?}");
    assert_eq!(announcer.readers.older_than(current - 1).map(|a| a.instance), Some("ccp-projector.old2".into()));
    assert_eq!(announcer.readers.older_than(1), None, "nothing reads below revision 1");
    announcer.withdraw().await;
    let _ = js.delete_key_value(bucket).await;
}
