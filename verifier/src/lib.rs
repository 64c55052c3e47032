//! Pure decision logic of DistributeAI: no I/O, no async, no networking.
//!
//! - [`consensus`]: the k-of-n decision a submitter makes as results arrive.
//! - [`reputation`]: reputation and credits from the ledger's verdicts, order-independent.
//! - [`simulation`]: a seeded population simulation of attacks on the job flow.
//! - [`selection`]: choosing n workers among the bidders, weighted and spread over operators.
//!
//! Everything here is deterministic and generic over worker and hash types, so it is tested
//! exhaustively and simulated at scale without a network.

pub mod consensus;
pub mod reputation;
pub mod selection;
pub mod simulation;

pub use consensus::{Decision, Recorded, Report, Tally, TallyError};
pub use selection::{Candidate, Selection, select, select_with_uniforms};
