//! Wire formats of our own protocols: length-prefixed frames with hard size caps.
//!
//! Every frame is `len: u32 big-endian | body`. A reader refuses a length above its cap before
//! allocating anything, so a hostile peer cannot make us buffer more than the cap.
//!
//! * `/agora/infer/3` (a libp2p stream): the client writes one request frame
//!   (`model sha256[32] | payload`), the server answers with chunk frames
//!   (`0 | token bytes`, `1` = end, `2 | utf-8 message` = error) and closes.
//! * `/agora/rpc/1` (request-response): one request frame, one response frame.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

use crate::offer::ModelId;

/// The streamed inference protocol.
pub const INFER_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/infer/3");
/// The small request-response protocol.
pub const RPC_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/rpc/1");

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer announced a frame above the cap.
    #[error("frame of {len} bytes exceeds the cap of {max}")]
    Oversized {
        /// Announced length.
        len: usize,
        /// Our cap.
        max: usize,
    },
    /// The frame body does not decode.
    #[error("malformed frame: {reason}")]
    Malformed {
        /// What was wrong.
        reason: &'static str,
    },
    /// The stream closed cleanly before a frame started.
    #[error("stream closed")]
    Closed,
    /// Transport error (includes a stream closed mid-frame).
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

impl FrameError {
    /// Whether this error is the peer's fault (garbage or oversize), as opposed to the network.
    pub fn is_protocol_violation(&self) -> bool {
        matches!(
            self,
            FrameError::Oversized { .. } | FrameError::Malformed { .. }
        )
    }
}

/// Reads one frame of at most `max` bytes.
pub async fn read_frame<R: AsyncRead + Unpin>(
    io: &mut R,
    max: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = io.read(&mut len[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Err(FrameError::Closed)
            } else {
                Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into()))
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::Oversized { len, max });
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Writes one frame (does not flush).
pub async fn write_frame<W: AsyncWrite + Unpin>(io: &mut W, body: &[u8]) -> io::Result<()> {
    let len =
        u32::try_from(body.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(body).await
}

/// A streamed inference request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceRequest {
    /// Which model (sha256 of the weights).
    pub model: ModelId,
    /// Opaque request body (prompt, sampling parameters, payment voucher), defined upstream.
    pub payload: Vec<u8>,
}

impl InferenceRequest {
    /// Encodes the request body.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32 + self.payload.len());
        v.extend_from_slice(&self.model);
        v.extend_from_slice(&self.payload);
        v
    }

    /// Decodes a request body.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        if bytes.len() < 32 {
            return Err(FrameError::Malformed {
                reason: "request shorter than a model id",
            });
        }
        let mut model = [0u8; 32];
        model.copy_from_slice(&bytes[..32]);
        Ok(Self {
            model,
            payload: bytes[32..].to_vec(),
        })
    }
}

/// One frame of a streamed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Some tokens (bytes defined upstream: text, token ids, proof material).
    Token(Vec<u8>),
    /// The response is complete.
    End,
    /// The provider gave up; the message is for humans.
    Error(String),
}

impl Chunk {
    /// Encodes the chunk body.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Chunk::Token(t) => {
                let mut v = Vec::with_capacity(1 + t.len());
                v.push(0);
                v.extend_from_slice(t);
                v
            }
            Chunk::End => vec![1],
            Chunk::Error(m) => {
                let mut v = vec![2];
                v.extend_from_slice(m.as_bytes());
                v
            }
        }
    }

    /// Decodes a chunk body.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        match bytes.split_first() {
            Some((0, rest)) => Ok(Chunk::Token(rest.to_vec())),
            Some((1, [])) => Ok(Chunk::End),
            Some((2, rest)) => std::str::from_utf8(rest)
                .map(|s| Chunk::Error(s.to_owned()))
                .map_err(|_| FrameError::Malformed {
                    reason: "error message is not utf-8",
                }),
            _ => Err(FrameError::Malformed {
                reason: "unknown chunk tag",
            }),
        }
    }
}

/// Request-response codec for `/agora/rpc/1`: opaque bytes, one frame each way, capped.
#[derive(Debug, Clone, Copy)]
pub struct RpcCodec {
    /// Largest request accepted.
    pub max_request: usize,
    /// Largest response accepted.
    pub max_response: usize,
}

impl libp2p::request_response::Codec for RpcCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    fn read_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> impl Future<Output = io::Result<Vec<u8>>> + Send
    where
        T: AsyncRead + Unpin + Send,
    {
        let max = self.max_request;
        async move { read_frame(io, max).await.map_err(into_io) }
    }

    fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> impl Future<Output = io::Result<Vec<u8>>> + Send
    where
        T: AsyncRead + Unpin + Send,
    {
        let max = self.max_response;
        async move { read_frame(io, max).await.map_err(into_io) }
    }

    fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> impl Future<Output = io::Result<()>> + Send
    where
        T: AsyncWrite + Unpin + Send,
    {
        let max = self.max_request;
        async move {
            if req.len() > max {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "request above cap",
                ));
            }
            write_frame(io, &req).await?;
            io.close().await
        }
    }

    fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> impl Future<Output = io::Result<()>> + Send
    where
        T: AsyncWrite + Unpin + Send,
    {
        let max = self.max_response;
        async move {
            if res.len() > max {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "response above cap",
                ));
            }
            write_frame(io, &res).await?;
            io.close().await
        }
    }
}

/// Marker carried inside `io::Error` so the node can tell garbage from network failures.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolViolation(pub String);

fn into_io(e: FrameError) -> io::Error {
    match e {
        FrameError::Io(e) => e,
        FrameError::Closed => io::ErrorKind::UnexpectedEof.into(),
        e @ (FrameError::Oversized { .. } | FrameError::Malformed { .. }) => {
            io::Error::new(io::ErrorKind::InvalidData, ProtocolViolation(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[tokio::test]
    async fn frames_round_trip_and_caps_are_enforced_before_allocation() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello").await.unwrap();
        write_frame(&mut buf, &[0u8; 100]).await.unwrap();
        let mut r = Cursor::new(buf);
        assert_eq!(read_frame(&mut r, 10).await.unwrap(), b"hello");
        assert!(matches!(
            read_frame(&mut r, 10).await,
            Err(FrameError::Oversized { len: 100, max: 10 })
        ));
        // A 4 GiB announcement is refused without allocating.
        let mut r = Cursor::new(vec![0xff, 0xff, 0xff, 0xff]);
        let e = read_frame(&mut r, 1 << 20).await.unwrap_err();
        assert!(e.is_protocol_violation());
        // Clean close vs truncated.
        assert!(matches!(
            read_frame(&mut Cursor::new(vec![]), 10).await,
            Err(FrameError::Closed)
        ));
        assert!(matches!(
            read_frame(&mut Cursor::new(vec![0, 0, 0, 5, 1]), 10).await,
            Err(FrameError::Io(_))
        ));
    }

    #[test]
    fn chunks_and_requests_round_trip_and_reject_garbage() {
        for c in [
            Chunk::Token(b"tok".to_vec()),
            Chunk::End,
            Chunk::Error("boom".into()),
        ] {
            assert_eq!(Chunk::decode(&c.encode()).unwrap(), c);
        }
        assert!(Chunk::decode(&[]).is_err());
        assert!(Chunk::decode(&[9, 1, 2]).is_err());
        assert!(Chunk::decode(&[1, 0]).is_err());
        assert!(Chunk::decode(&[2, 0xff, 0xfe]).is_err());
        let r = InferenceRequest {
            model: [3; 32],
            payload: b"prompt".to_vec(),
        };
        assert_eq!(InferenceRequest::decode(&r.encode()).unwrap(), r);
        assert!(InferenceRequest::decode(&[0u8; 31]).is_err());
    }
}
