//! The API types' JSON is the wire format the node has always spoken.

use agora_rpc::api::{Accepted, BatchResult, ErrorBody, ErrorDetail, SubmitResponse, TxView};
use agora_types::Hash;
use serde_json::json;

#[test]
fn transaction_status_keeps_its_shapes() {
    let id = Hash([9; 32]);
    assert_eq!(
        serde_json::to_value(TxView::Pending { id }).unwrap(),
        json!({"id": id, "status": "pending"})
    );
    assert_eq!(
        serde_json::to_value(TxView::Final {
            id,
            height: 4,
            receipt: None
        })
        .unwrap(),
        json!({"id": id, "status": "final", "height": 4, "receipt": null})
    );
}

#[test]
fn batch_results_are_an_acceptance_or_an_error_body() {
    let id = Hash([2; 32]);
    let results = vec![
        BatchResult::Accepted(SubmitResponse {
            id,
            status: Accepted::Pending,
        }),
        BatchResult::Refused(ErrorBody {
            error: ErrorDetail {
                code: "bad_hex".into(),
                message: "tx is not valid hex".into(),
            },
        }),
    ];
    let wire = serde_json::to_value(&results).unwrap();
    assert_eq!(
        wire,
        json!([
            {"id": id, "status": "pending"},
            {"error": {"code": "bad_hex", "message": "tx is not valid hex"}}
        ])
    );
    let back: Vec<BatchResult> = serde_json::from_value(wire).unwrap();
    assert!(matches!(back[0], BatchResult::Accepted(_)));
    assert!(matches!(&back[1], BatchResult::Refused(e) if e.error.code == "bad_hex"));
}
