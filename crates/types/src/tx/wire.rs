//! The canonical encoding of transactions and what they carry: the bytes signatures cover and
//! blocks store, decoded within the limits of [`super::limits`].

use super::*;

impl Encode for Tx {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_bytes(self.chain_id.as_bytes());
        self.signer.encode_to(out);
        out.put_u64(self.nonce);
        self.fee.encode_to(out);
        self.body.encode_to(out);
    }
}

impl Decode for Tx {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Tx {
            chain_id: r.string("chain id", MAX_CHAIN_ID)?,
            signer: PublicKey::decode_from(r)?,
            nonce: r.u64()?,
            fee: Amount::decode_from(r)?,
            body: TxBody::decode_from(r)?,
        })
    }
}

impl Encode for TxBody {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            TxBody::Transfer { to, amount } => {
                out.put_u8(0);
                to.encode_to(out);
                amount.encode_to(out);
            }
            TxBody::Bond { target, amount } => {
                out.put_u8(1);
                target.encode_to(out);
                amount.encode_to(out);
            }
            TxBody::Unbond { target, amount } => {
                out.put_u8(2);
                target.encode_to(out);
                amount.encode_to(out);
            }
            TxBody::Withdraw => out.put_u8(3),
            TxBody::RegisterValidator => out.put_u8(4),
            TxBody::RegisterProvider(info) => {
                out.put_u8(5);
                info.encode_to(out);
            }
            TxBody::RegisterModel(info) => {
                out.put_u8(6);
                info.encode_to(out);
            }
            TxBody::RegisterDataset(info) => {
                out.put_u8(7);
                info.encode_to(out);
            }
            TxBody::OpenChannel {
                provider,
                deposit,
                expiry_height,
            } => {
                out.put_u8(8);
                provider.encode_to(out);
                deposit.encode_to(out);
                out.put_u64(*expiry_height);
            }
            TxBody::TopUpChannel { channel, amount } => {
                out.put_u8(9);
                channel.encode_to(out);
                amount.encode_to(out);
            }
            TxBody::RedeemVoucher(v) => {
                out.put_u8(10);
                v.encode_to(out);
            }
            TxBody::CloseChannel { channel } => {
                out.put_u8(11);
                channel.encode_to(out);
            }
            TxBody::SettleChannel { channel } => {
                out.put_u8(12);
                channel.encode_to(out);
            }
            TxBody::Slash(e) => {
                out.put_u8(13);
                e.encode_to(out);
            }
            TxBody::CommitReceipts { root, count } => {
                out.put_u8(14);
                root.encode_to(out);
                out.put_u32(*count);
            }
            TxBody::CreateMarket(spec) => {
                out.put_u8(15);
                spec.encode_to(out);
            }
            TxBody::JoinMarket { market } => {
                out.put_u8(16);
                market.encode_to(out);
            }
            TxBody::CommitWeights { market, commitment } => {
                out.put_u8(17);
                market.encode_to(out);
                commitment.encode_to(out);
            }
            TxBody::RevealWeights(reveal) => {
                out.put_u8(18);
                reveal.encode_to(out);
            }
        }
    }
}

impl Decode for TxBody {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => TxBody::Transfer {
                to: Decode::decode_from(r)?,
                amount: Decode::decode_from(r)?,
            },
            1 => TxBody::Bond {
                target: Decode::decode_from(r)?,
                amount: Decode::decode_from(r)?,
            },
            2 => TxBody::Unbond {
                target: Decode::decode_from(r)?,
                amount: Decode::decode_from(r)?,
            },
            3 => TxBody::Withdraw,
            4 => TxBody::RegisterValidator,
            5 => TxBody::RegisterProvider(Decode::decode_from(r)?),
            6 => TxBody::RegisterModel(Decode::decode_from(r)?),
            7 => TxBody::RegisterDataset(Decode::decode_from(r)?),
            8 => TxBody::OpenChannel {
                provider: Decode::decode_from(r)?,
                deposit: Decode::decode_from(r)?,
                expiry_height: r.u64()?,
            },
            9 => TxBody::TopUpChannel {
                channel: Decode::decode_from(r)?,
                amount: Decode::decode_from(r)?,
            },
            10 => TxBody::RedeemVoucher(Decode::decode_from(r)?),
            11 => TxBody::CloseChannel {
                channel: Decode::decode_from(r)?,
            },
            12 => TxBody::SettleChannel {
                channel: Decode::decode_from(r)?,
            },
            13 => TxBody::Slash(Decode::decode_from(r)?),
            14 => TxBody::CommitReceipts {
                root: Decode::decode_from(r)?,
                count: r.u32()?,
            },
            15 => TxBody::CreateMarket(Decode::decode_from(r)?),
            16 => TxBody::JoinMarket {
                market: Decode::decode_from(r)?,
            },
            17 => TxBody::CommitWeights {
                market: Decode::decode_from(r)?,
                commitment: Decode::decode_from(r)?,
            },
            18 => TxBody::RevealWeights(Decode::decode_from(r)?),
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "tx kind",
                    tag,
                });
            }
        })
    }
}

impl Encode for ProviderInfo {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_bytes(&self.peer_id);
        out.put_len(self.endpoints.len());
        for e in &self.endpoints {
            out.put_bytes(e.as_bytes());
        }
        self.hardware.encode_to(out);
        out.put_vec(&self.models);
    }
}

impl Decode for ProviderInfo {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let peer_id = r.bytes("peer id", MAX_PEER_ID)?;
        let n = r.len("endpoints", MAX_ENDPOINTS, 4)?;
        let mut endpoints = Vec::with_capacity(n);
        for _ in 0..n {
            endpoints.push(r.string("endpoint", MAX_ENDPOINT)?);
        }
        Ok(ProviderInfo {
            peer_id,
            endpoints,
            hardware: Decode::decode_from(r)?,
            models: r.vec("provider models", MAX_MODELS_PER_PROVIDER, 64)?,
        })
    }
}

impl Encode for HardwareSummary {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_bytes(self.accelerator.as_bytes());
        out.put_u32(self.memory_mib);
        out.put_u16(self.cpu_cores);
    }
}

impl Decode for HardwareSummary {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(HardwareSummary {
            accelerator: r.string("accelerator", MAX_NAME)?,
            memory_mib: r.u32()?,
            cpu_cores: r.u16()?,
        })
    }
}

impl Encode for ModelPrice {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.model.encode_to(out);
        self.input_per_million.encode_to(out);
        self.output_per_million.encode_to(out);
    }
}

impl Decode for ModelPrice {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ModelPrice {
            model: Decode::decode_from(r)?,
            input_per_million: Decode::decode_from(r)?,
            output_per_million: Decode::decode_from(r)?,
        })
    }
}

impl Encode for ModelRegistration {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.sha256.encode_to(out);
        out.put_bytes(self.name.as_bytes());
        out.put_bytes(self.family.as_bytes());
        self.kind.encode_to(out);
        out.put_bytes(self.license.as_bytes());
        out.put_u16(self.royalty_bps);
    }
}

impl Decode for ModelRegistration {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ModelRegistration {
            sha256: Decode::decode_from(r)?,
            name: r.string("model name", MAX_NAME)?,
            family: r.string("model family", MAX_NAME)?,
            kind: Decode::decode_from(r)?,
            license: r.string("model license", MAX_LICENSE)?,
            royalty_bps: r.u16()?,
        })
    }
}

impl Encode for ModelKind {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(match self {
            ModelKind::Chat => 0,
            ModelKind::Completion => 1,
            ModelKind::Embedding => 2,
        });
    }
}

impl Decode for ModelKind {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => Ok(ModelKind::Chat),
            1 => Ok(ModelKind::Completion),
            2 => Ok(ModelKind::Embedding),
            tag => Err(DecodeError::InvalidTag {
                what: "model kind",
                tag,
            }),
        }
    }
}

impl Encode for DatasetInfo {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.content_hash.encode_to(out);
        out.put_bytes(self.name.as_bytes());
        out.put_bytes(self.license.as_bytes());
    }
}

impl Decode for DatasetInfo {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DatasetInfo {
            content_hash: Decode::decode_from(r)?,
            name: r.string("dataset name", MAX_NAME)?,
            license: r.string("dataset license", MAX_LICENSE)?,
        })
    }
}

impl Encode for (Hash, Amount) {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.0.encode_to(out);
        self.1.encode_to(out);
    }
}

impl Decode for (Hash, Amount) {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok((Decode::decode_from(r)?, Decode::decode_from(r)?))
    }
}

impl Encode for Voucher {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_bytes(self.chain_id.as_bytes());
        self.channel.encode_to(out);
        self.cumulative.encode_to(out);
        out.put_vec(&self.per_model);
    }
}

impl Decode for Voucher {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Voucher {
            chain_id: r.string("chain id", MAX_CHAIN_ID)?,
            channel: Decode::decode_from(r)?,
            cumulative: Decode::decode_from(r)?,
            per_model: r.vec("voucher models", MAX_MODELS_PER_VOUCHER, 48)?,
        })
    }
}

impl Encode for SignedVoucher {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.voucher.encode_to(out);
        self.signature.encode_to(out);
    }
}

impl Decode for SignedVoucher {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SignedVoucher {
            voucher: Decode::decode_from(r)?,
            signature: Decode::decode_from(r)?,
        })
    }
}

impl Encode for Evidence {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            Evidence::ConflictingClaims {
                offender,
                subject,
                claim_a,
                signature_a,
                claim_b,
                signature_b,
            } => {
                out.put_u8(0);
                offender.encode_to(out);
                subject.encode_to(out);
                claim_a.encode_to(out);
                signature_a.encode_to(out);
                claim_b.encode_to(out);
                signature_b.encode_to(out);
            }
            Evidence::ConflictingVotes {
                offender,
                epoch,
                view,
                vote_a,
                vote_b,
            } => {
                out.put_u8(1);
                offender.encode_to(out);
                out.put_u64(*epoch);
                out.put_u64(*view);
                vote_a.encode_to(out);
                vote_b.encode_to(out);
            }
            Evidence::FailedAudit { receipt, verdicts } => {
                out.put_u8(2);
                receipt.encode_to(out);
                out.put_vec(verdicts);
            }
        }
    }
}

impl Decode for Evidence {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => Ok(Evidence::ConflictingClaims {
                offender: Decode::decode_from(r)?,
                subject: Decode::decode_from(r)?,
                claim_a: Decode::decode_from(r)?,
                signature_a: Decode::decode_from(r)?,
                claim_b: Decode::decode_from(r)?,
                signature_b: Decode::decode_from(r)?,
            }),
            1 => Ok(Evidence::ConflictingVotes {
                offender: Decode::decode_from(r)?,
                epoch: r.u64()?,
                view: r.u64()?,
                vote_a: Decode::decode_from(r)?,
                vote_b: Decode::decode_from(r)?,
            }),
            2 => Ok(Evidence::FailedAudit {
                receipt: Box::new(Decode::decode_from(r)?),
                verdicts: r.vec(
                    "audit verdicts",
                    MAX_AUDIT_VERDICTS,
                    MIN_SIGNED_VERDICT_BYTES,
                )?,
            }),
            tag => Err(DecodeError::InvalidTag {
                what: "evidence kind",
                tag,
            }),
        }
    }
}

impl Encode for ConsensusVote {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(match self.kind {
            VoteKind::Notarize => 0,
            VoteKind::Nullify => 1,
            VoteKind::Finalize => 2,
        });
        out.put_u64(self.parent_view);
        self.payload.encode_to(out);
        self.signature.encode_to(out);
    }
}

impl Decode for ConsensusVote {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let kind = match r.u8()? {
            0 => VoteKind::Notarize,
            1 => VoteKind::Nullify,
            2 => VoteKind::Finalize,
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "vote kind",
                    tag,
                });
            }
        };
        Ok(ConsensusVote {
            kind,
            parent_view: r.u64()?,
            payload: Decode::decode_from(r)?,
            signature: Decode::decode_from(r)?,
        })
    }
}

impl Encode for SignedTx {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.tx.encode_to(out);
        self.signature.encode_to(out);
    }
}

impl Decode for SignedTx {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SignedTx {
            tx: Decode::decode_from(r)?,
            signature: Decode::decode_from(r)?,
        })
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_TX_BYTES {
            return Err(DecodeError::TooLong {
                what: "transaction",
                len: bytes.len(),
                max: MAX_TX_BYTES,
            });
        }
        let mut r = Reader::new(bytes);
        let v = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}
