//! The DistributeAI terminal UI (ratatui), a client of a node's local HTTP API. It is built
//! once the job flow and its API exist.
