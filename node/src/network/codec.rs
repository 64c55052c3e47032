//! The request-response codec: one CBOR message per stream, read with a hard size bound and
//! decoded with the protocol crate, so undecodable or oversized direct messages never reach
//! the node (they are counted by reason and the stream is closed).

use std::io;

use distributeai_protocol::limits::MAX_MESSAGE_BYTES;
use distributeai_protocol::{Request, Response, ValidationError};
use futures::prelude::*;
use libp2p::StreamProtocol;

use crate::metrics::Metrics;

/// The versioned protocol name of direct messages.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/distributeai/req/2.0.0");

/// Encodes and decodes [`Request`] and [`Response`] with the protocol crate's bounded codec.
#[derive(Clone)]
pub struct Codec {
    metrics: Metrics,
}

impl Codec {
    /// A codec that counts the messages it drops in `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }

    fn rejected(&self, kind: &'static str, error: ValidationError) -> io::Error {
        self.metrics.dropped(kind, error.reason());
        tracing::debug!(kind, %error, "dropped direct message");
        io::Error::new(io::ErrorKind::InvalidData, error)
    }
}

/// Reads the whole stream, refusing more than [`MAX_MESSAGE_BYTES`].
async fn read_bounded<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    io.take(MAX_MESSAGE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .await?;
    Ok(bytes)
}

async fn write_all<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    io.write_all(bytes).await?;
    io.close().await
}

fn encode_error(e: distributeai_protocol::EncodeError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_bounded(io).await?;
        Request::decode(&bytes).map_err(|e| self.rejected("request", e))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_bounded(io).await?;
        Response::decode(&bytes).map_err(|e| self.rejected("response", e))
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_all(io, &request.encode().map_err(encode_error)?).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_all(io, &response.encode().map_err(encode_error)?).await
    }
}
