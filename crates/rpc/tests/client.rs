//! The client against a hand-written HTTP peer: typed answers, refusals in the API's error
//! shape, 404 as "no such record", and answers over the size limit refused, not buffered.

use agora_rpc::{ChainClient, ChainError, MAX_ANSWER_BYTES};
use agora_types::Hash;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves one connection with `head` then `body`, and closes it.
async fn peer(head: String, body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut seen = Vec::new();
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        let _ = s.write_all(head.as_bytes()).await;
        let _ = s.write_all(&body).await;
        let _ = s.shutdown().await;
    });
    url
}

fn answer(status: &str, body: &str) -> (String, Vec<u8>) {
    (
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        ),
        body.as_bytes().to_vec(),
    )
}

#[tokio::test]
async fn a_refusal_carries_the_nodes_code_and_message() {
    let (head, body) = answer(
        "409 Conflict",
        r#"{"error":{"code":"duplicate","message":"already in the mempool"}}"#,
    );
    let client = ChainClient::new(&peer(head, body).await);
    match client.tx(&Hash([7; 32])).await {
        Err(ChainError::Refused {
            status,
            code,
            message,
        }) => {
            assert_eq!((status, code.as_str()), (409, "duplicate"));
            assert_eq!(message, "already in the mempool");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn not_found_is_no_record() {
    let (head, body) = answer(
        "404 Not Found",
        r#"{"error":{"code":"not_found","message":"channel not found"}}"#,
    );
    let client = ChainClient::new(&peer(head, body).await);
    assert!(client.channel(&Hash([1; 32])).await.unwrap().is_none());
}

#[tokio::test]
async fn a_pending_transaction_reads_as_pending() {
    let id = Hash([3; 32]);
    let (head, body) = answer("200 OK", &format!(r#"{{"id":"{id}","status":"pending"}}"#));
    let client = ChainClient::new(&peer(head, body).await);
    assert!(matches!(
        client.tx(&id).await.unwrap(),
        Some(agora_rpc::TxView::Pending { id: got }) if got == id
    ));
}

#[tokio::test]
async fn an_answer_over_the_limit_is_refused() {
    // Announced too large.
    let big = "x".repeat(MAX_ANSWER_BYTES + 1);
    let (head, body) = answer("200 OK", &big);
    let client = ChainClient::new(&peer(head, body).await);
    let err = client.status().await.unwrap_err();
    assert!(
        matches!(&err, ChainError::BadAnswer(m) if m.contains("exceeds")),
        "{err}"
    );
    // Not announced: read until the limit, then refused.
    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
    let client = ChainClient::new(&peer(head.into(), big.into_bytes()).await);
    let err = client.status().await.unwrap_err();
    assert!(
        matches!(&err, ChainError::BadAnswer(m) if m.contains("exceeds")),
        "{err}"
    );
}

#[tokio::test]
async fn a_garbled_answer_is_a_clear_error() {
    let (head, body) = answer("200 OK", r#"{"chain_id": 5}"#);
    let client = ChainClient::new(&peer(head, body).await);
    let err = client.info().await.unwrap_err();
    assert!(matches!(err, ChainError::BadAnswer(_)), "{err}");
}

#[tokio::test]
async fn an_absent_node_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = ChainClient::new(&url).status().await.unwrap_err();
    assert!(matches!(err, ChainError::Unreachable { .. }), "{err}");
}
