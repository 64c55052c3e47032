//! Fuzzes the decoders that see untrusted bytes first: the gossip and request-response
//! messages, and every signed envelope inside them. Any panic is a bug.

#![no_main]

use distributeai_protocol::{GossipMessage, Request, Response, ValidationContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ctx = ValidationContext::live_at(1_800_000_000_000);
    let _ = GossipMessage::decode_verified(data, &ctx);
    if let Ok(request) = Request::decode(data) {
        match request {
            Request::Bid(m) => drop(m.open(&ctx)),
            Request::Assign(m) => drop(m.open(&ctx)),
            Request::Commit(m) => drop(m.open(&ctx)),
            Request::Invite(m) => drop(m.open(&ctx)),
            Request::Reveal { .. } | Request::FetchOutput { .. } | Request::LedgerSync(_) => {}
        }
    }
    match Response::decode(data) {
        Ok(Response::Reveal(m)) => drop(m.open(&ctx)),
        Ok(Response::Accepted(m)) => drop(m.open(&ctx)),
        _ => {}
    }
});
