//! The cloneable handle through which the node talks to the network task.

use distributeai_protocol::{GossipMessage, Request, Response};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use super::event_loop::Command;
use super::{InboundRequestId, NetworkError, NetworkInfo, Route, VerifiedResponse};

/// Sends commands to the network task and awaits its answers.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
}

impl Client {
    pub(super) fn new(commands: mpsc::Sender<Command>) -> Self {
        Self { commands }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetworkError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| NetworkError::Stopped)?;
        answer.await.map_err(|_| NetworkError::Stopped)
    }

    /// Publishes a message on the gossip topic.
    pub async fn publish(&self, message: GossipMessage) -> Result<(), NetworkError> {
        self.ask(|reply| Command::Publish { message, reply })
            .await?
    }

    /// Sends a direct request and waits for the verified response.
    pub async fn request(
        &self,
        peer: PeerId,
        request: Request,
    ) -> Result<VerifiedResponse, NetworkError> {
        self.ask(|reply| Command::Request {
            peer,
            request,
            reply,
        })
        .await?
    }

    /// Answers an inbound request.
    pub async fn respond(
        &self,
        id: InboundRequestId,
        response: Response,
    ) -> Result<(), NetworkError> {
        self.commands
            .send(Command::Respond { id, response })
            .await
            .map_err(|_| NetworkError::Stopped)
    }

    /// Dials an address.
    pub async fn dial(&self, address: Multiaddr) -> Result<(), NetworkError> {
        self.ask(|reply| Command::Dial { address, reply }).await?
    }

    /// Tells the swarm where a peer can be reached (from its signed announcement).
    pub async fn add_peer_addresses(
        &self,
        peer: PeerId,
        addresses: Vec<Multiaddr>,
    ) -> Result<(), NetworkError> {
        self.commands
            .send(Command::AddAddresses { peer, addresses })
            .await
            .map_err(|_| NetworkError::Stopped)
    }

    /// How we are connected to `peer` now: `None` when not connected.
    pub async fn route(&self, peer: PeerId) -> Result<Option<Route>, NetworkError> {
        self.ask(|reply| Command::Route { peer, reply }).await
    }

    /// Our PeerId, listen addresses and connected peers.
    pub async fn info(&self) -> Result<NetworkInfo, NetworkError> {
        self.ask(|reply| Command::Info { reply }).await
    }
}
