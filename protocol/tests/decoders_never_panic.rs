//! Property tests: arbitrary and mutated bytes fed to every decoder produce errors, never a
//! panic.

mod common;

use common::*;
use distributeai_protocol::codec;
use distributeai_protocol::*;
use proptest::prelude::*;

fn feed_every_decoder(bytes: &[u8]) {
    let ctx = ctx();
    let _ = GossipMessage::decode_verified(bytes, &ctx);
    let _ = Request::decode(bytes);
    let _ = Response::decode(bytes);
    for kind in MessageKind::ALL {
        let _ = decode_and_open(kind, bytes);
    }
    let _ = codec::decode::<Signed<Verdict>>(bytes).map(|s| s.open(&ctx));
    let _ = codec::decode::<Signed<ResultReveal>>(bytes).map(|s| s.open(&ctx));
    let _ = codec::decode::<JobSpec>(bytes).map(|s| s.check());
    let _ = codec::decode::<NodeAnnouncement>(bytes);
    let _ = codec::decode::<OutputManifest>(bytes).map(|m| m.result_hash());
    let _ = codec::decode::<LedgerSyncResponse>(bytes);
    let _ = serde_json::from_slice::<JobSpec>(bytes).map(|s| s.check());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        feed_every_decoder(&bytes);
    }

    #[test]
    fn mutated_valid_messages(
        which in 0usize..8,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        truncate in any::<prop::sample::Index>(),
        do_truncate in any::<bool>(),
    ) {
        let (_, mut bytes) = every_signed_message().swap_remove(which);
        for (index, value) in edits {
            let i = index.index(bytes.len());
            bytes[i] = value;
        }
        if do_truncate {
            bytes.truncate(truncate.index(bytes.len()));
        }
        feed_every_decoder(&bytes);
    }
}
