//! The KMS master-key provider against a fake KMS speaking the AWS JSON protocol: Bedrock keys
//! sealed under KMS open again, calls are signed and carry the key id and encryption context,
//! and a different key cannot open them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ccp_schemas::secrets::envelope::{BedrockApiKey, CryptoError, MasterKey, SealedSecret};
use ccp_schemas::secrets::kms::{KmsMasterKey, KmsOptions};
use ccp_tests::fake_kms::FakeKms;

const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/0a1b2c3d-test";

fn master(kms: &FakeKms, key_id: &str) -> KmsMasterKey {
    KmsMasterKey::new(KmsOptions {
        key_id: key_id.into(),
        region: "us-east-1".into(),
        endpoint_url: Some(kms.url()),
        access_key_id: "AKIAEXAMPLE".into(),
        secret_access_key: "secret-example".into(),
        session_token: None,
    })
}

#[tokio::test]
async fn kms_sealed_bedrock_keys_round_trip() {
    let kms = FakeKms::start(KEY_ARN).unwrap();
    let m = master(&kms, KEY_ARN);
    assert_eq!(m.id(), KEY_ARN);
    let secret = BedrockApiKey::new("ABSKQmVkcm9ja0FQSUtleS1rbXMtdGVzdC0wMDAx").unwrap();
    let sealed = SealedSecret::seal(&m, &secret, "key_01").await.unwrap();
    assert_eq!(sealed.master_key_id, KEY_ARN);
    let json = serde_json::to_string(&sealed).unwrap();
    assert!(!json.contains("cm9ja0FQSUtleS1rbXMt"));
    let opened = sealed.open(&m, "key_01").await.unwrap();
    assert_eq!(opened.expose(), secret.expose());

    let calls = kms.calls();
    assert_eq!(calls.iter().map(|c| c.operation.as_str()).collect::<Vec<_>>(), ["Encrypt", "Decrypt"]);
    for c in &calls {
        assert!(c.signed, "KMS calls are SigV4-signed");
        assert_eq!(c.key_id.as_deref(), Some(KEY_ARN));
        assert_eq!(c.context.get("purpose").map(String::as_str), Some("claudecodeproxy-bedrock-api-key"));
    }
    // The access key id is still bound as associated data.
    assert_eq!(sealed.open(&m, "key_02").await.err(), Some(CryptoError::Open));
}

#[tokio::test]
async fn another_kms_key_cannot_open_it() {
    let kms = FakeKms::start(KEY_ARN).unwrap();
    let sealed =
        SealedSecret::seal(&master(&kms, KEY_ARN), &BedrockApiKey::new("ABSK-test-key").unwrap(), "k").await.unwrap();
    let other = master(&kms, "arn:aws:kms:us-east-1:111122223333:key/other");
    assert!(matches!(sealed.open(&other, "k").await, Err(CryptoError::UnknownMasterKey(_))));
    let err = SealedSecret::seal(&other, &BedrockApiKey::new("ABSK-x").unwrap(), "k").await.unwrap_err();
    assert!(err.to_string().contains("NotFoundException"), "{err}");
}
