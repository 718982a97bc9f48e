//! Why a provider gave up on a job, as it travels in `Frame::Failed`, and what each reason means
//! for the gateway: the client's fault ends the completion with a 400, anything else is the
//! provider's trouble and the gateway fails over to another provider.
//!
//! On the wire a code is its snake_case name (`"context_length_exceeded"`). A code this build
//! does not know (a newer or hostile peer) decodes to [`FailureCode::Other`] and is treated as
//! the provider's fault, never as a decoding error.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// The job is malformed or its parameters are out of range for the model.
    InvalidRequest,
    /// Prompt plus continuation plus `max_tokens` do not fit the model's context.
    ContextLengthExceeded,
    /// The provider does not serve the job's model.
    ModelNotFound,
    /// The job's price is under the provider's.
    PriceTooLow,
    /// No voucher arrived in time for work already delivered (or the channel is not the payer's).
    PaymentRequired,
    /// The job names a payer other than the overlay peer that sent it: a stranger may not bill
    /// someone else's channel.
    NotThePayer,
    /// The channel's deposit cannot cover more work.
    ChannelExhausted,
    /// The provider could not read the channel from the ledger.
    LedgerUnavailable,
    /// Every slot of the provider's engine is busy.
    Overloaded,
    /// The engine failed or is shutting down.
    EngineError,
    /// A code this build does not know, kept as sent.
    #[serde(untagged)]
    Other(String),
}

impl FailureCode {
    /// The request itself is at fault: another provider would refuse it too, so the gateway
    /// answers the client with a 400 and does not fail over.
    pub fn is_client_fault(&self) -> bool {
        matches!(
            self,
            FailureCode::InvalidRequest | FailureCode::ContextLengthExceeded
        )
    }

    /// The provider (or the path to it) failed: try the next provider. Unknown codes count here.
    pub fn fails_over(&self) -> bool {
        !self.is_client_fault()
    }

    /// About the payment channel or the price rather than the work.
    pub fn is_payment(&self) -> bool {
        matches!(
            self,
            FailureCode::PriceTooLow
                | FailureCode::PaymentRequired
                | FailureCode::NotThePayer
                | FailureCode::ChannelExhausted
        )
    }
}

impl FailureCode {
    /// The code a wire name stands for; a name this build does not know is kept as
    /// [`FailureCode::Other`] (the serde attributes above are the one table of names).
    pub fn from_name(name: &str) -> FailureCode {
        serde_json::from_value(serde_json::Value::String(name.to_owned()))
            .unwrap_or_else(|_| FailureCode::Other(name.to_owned()))
    }
}

/// The wire name: the serde attributes above are the one table of names.
impl std::fmt::Display for FailureCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(name)) => f.write_str(&name),
            _ => Err(std::fmt::Error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Frame;

    const KNOWN: [FailureCode; 10] = [
        FailureCode::InvalidRequest,
        FailureCode::ContextLengthExceeded,
        FailureCode::ModelNotFound,
        FailureCode::PriceTooLow,
        FailureCode::PaymentRequired,
        FailureCode::ChannelExhausted,
        FailureCode::LedgerUnavailable,
        FailureCode::Overloaded,
        FailureCode::EngineError,
        FailureCode::NotThePayer,
    ];

    #[test]
    fn wire_names_are_the_snake_case_strings_sent_before_the_enum() {
        let before = [
            "invalid_request",
            "context_length_exceeded",
            "model_not_found",
            "price_too_low",
            "payment_required",
            "channel_exhausted",
            "ledger_unavailable",
            "overloaded",
            "engine_error",
            "not_the_payer",
        ];
        for (code, name) in KNOWN.iter().zip(before) {
            assert_eq!(serde_json::to_value(code).unwrap(), name);
            assert_eq!(code.to_string(), name);
            let back: FailureCode = serde_json::from_value(name.into()).unwrap();
            assert_eq!(&back, code);
        }
        // A failure frame carries the name, and decodes back to the enum.
        let f = Frame::Failed {
            code: FailureCode::ContextLengthExceeded,
            message: "too long".into(),
            receipt: None,
            proof: None,
        };
        let bytes = f.encode();
        assert!(
            bytes
                .windows(before[1].len())
                .any(|w| w == before[1].as_bytes())
        );
        assert_eq!(Frame::decode(&bytes).unwrap(), f);
    }

    #[test]
    fn unknown_codes_from_a_newer_or_hostile_peer_decode_and_fail_over() {
        let sent = Frame::Failed {
            code: FailureCode::Other("quantum_flux".into()),
            message: "m".into(),
            receipt: None,
            proof: None,
        };
        let bytes = sent.encode();
        let Frame::Failed { code, .. } = Frame::decode(&bytes).unwrap() else {
            panic!("not a failure frame")
        };
        assert_eq!(code, FailureCode::Other("quantum_flux".into()));
        assert!(code.fails_over() && !code.is_client_fault() && !code.is_payment());
        // Re-encoded as received.
        assert_eq!(code.to_string(), "quantum_flux");
        assert_eq!(
            FailureCode::from_name("overloaded"),
            FailureCode::Overloaded
        );
        // A name that is not UTF-8: a decoding error, not a panic.
        let at = bytes.windows(4).position(|w| w == b"quan").unwrap();
        let mut bad = bytes.clone();
        bad[at] = 0xff;
        assert!(Frame::decode(&bad).is_err());
    }

    #[test]
    fn only_the_requests_own_faults_stop_the_failover() {
        for code in KNOWN {
            let client = matches!(
                code,
                FailureCode::InvalidRequest | FailureCode::ContextLengthExceeded
            );
            assert_eq!(code.is_client_fault(), client, "{code}");
            assert_eq!(code.fails_over(), !client, "{code}");
        }
        assert!(FailureCode::PaymentRequired.is_payment());
        assert!(FailureCode::ChannelExhausted.is_payment());
        assert!(FailureCode::PriceTooLow.is_payment());
        assert!(!FailureCode::Overloaded.is_payment());
    }
}
